"""Test support that ships with the tooling: the pytest plugin for tests of built images.

Install it with the `testing` extra (`buildtasks[testing]`, which brings pytest); the tasks
and sessions themselves never import it.
"""
