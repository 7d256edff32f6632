"""Build, test and release tooling for the monorepo: config -> plan -> run."""
