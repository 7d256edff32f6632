import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import {
  fetchJson,
  gatewayPath,
  loadStatus,
  readinessChecks,
  summarize,
  versionLabel,
} from '../src/status.js'

const ok = (body) => ({ status: 200, body, error: null })
const HEALTHY = ok({ status: 'ok' })
const READY = ok({ status: 'ready', checks: {} })
const VERSION = ok({ version: '1.4.0', revision: '3f2a9c1d8e7b6a5f', build_date: '2025-01-31T10:00:00Z' })

function fakeFetch(routes) {
  const calls = []
  const fetch = async (url, init) => {
    calls.push({ url, init })
    const route = routes[url]
    if (route instanceof Error) throw route
    if (!route) return new Response('not found', { status: 404 })
    return new Response(typeof route.body === 'string' ? route.body : JSON.stringify(route.body), {
      status: route.status ?? 200,
    })
  }
  return { fetch, calls }
}

describe('gatewayPath', () => {
  it('puts endpoints under the web server prefix', () => {
    assert.equal(gatewayPath('health'), '/api/gateway/health')
    assert.equal(gatewayPath('/version'), '/api/gateway/version')
  })
})

describe('fetchJson', () => {
  it('returns status and parsed body', async () => {
    const { fetch, calls } = fakeFetch({ '/x': { body: { a: 1 } } })
    assert.deepEqual(await fetchJson('/x', { fetch }), { status: 200, body: { a: 1 }, error: null })
    assert.equal(calls[0].init.headers.accept, 'application/json')
    assert.equal(calls[0].init.cache, 'no-store')
  })

  it('keeps the status of a non-JSON answer', async () => {
    const { fetch } = fakeFetch({ '/x': { status: 502, body: '<html>bad gateway</html>' } })
    assert.deepEqual(await fetchJson('/x', { fetch }), { status: 502, body: null, error: null })
  })

  it('reports a network failure as status 0 instead of throwing', async () => {
    const { fetch } = fakeFetch({ '/x': new TypeError('fetch failed') })
    assert.deepEqual(await fetchJson('/x', { fetch }), {
      status: 0,
      body: null,
      error: 'network error',
    })
  })

  it('gives up after the timeout', async () => {
    // AbortSignal.timeout does not keep Node's event loop alive; this timer does.
    const fetch = (url, init) =>
      new Promise((resolve, reject) => {
        const late = setTimeout(() => resolve(new Response('{}')), 5000)
        init.signal.addEventListener('abort', () => {
          clearTimeout(late)
          reject(init.signal.reason)
        })
      })
    const result = await fetchJson('/x', { fetch, timeoutMs: 50 })
    assert.deepEqual(result, { status: 0, body: null, error: 'no answer within 50 ms' })
  })
})

describe('readinessChecks and versionLabel', () => {
  it('lists checks sorted by name with their errors', () => {
    const ready = {
      status: 503,
      body: {
        checks: {
          redis: { ok: true, target: 'redis:6379' },
          database: { ok: false, target: 'db:5432', error: 'connection refused' },
        },
      },
    }
    assert.deepEqual(readinessChecks(ready), [
      { name: 'database', ok: false, target: 'db:5432', error: 'connection refused' },
      { name: 'redis', ok: true, target: 'redis:6379', error: '' },
    ])
    assert.deepEqual(readinessChecks({ status: 0, body: null }), [])
  })

  it('shortens the revision and omits unknown parts', () => {
    assert.equal(versionLabel(VERSION), '1.4.0 (3f2a9c1d8e7b, built 2025-01-31T10:00:00Z)')
    assert.equal(
      versionLabel(ok({ version: 'dev', revision: 'unknown', build_date: 'unknown' })),
      'dev',
    )
    assert.equal(versionLabel({ status: 502, body: { detail: 'x' } }), null)
    assert.equal(versionLabel(ok({ nothing: true })), null)
  })
})

describe('summarize', () => {
  it('is up when health and readiness pass', () => {
    const summary = summarize({ health: HEALTHY, ready: READY, version: VERSION })
    assert.equal(summary.state, 'up')
    assert.equal(summary.headline, 'API gateway is up and ready')
    assert.equal(summary.version, '1.4.0 (3f2a9c1d8e7b, built 2025-01-31T10:00:00Z)')
  })

  it('is degraded and names the failing dependencies when not ready', () => {
    const ready = {
      status: 503,
      body: {
        status: 'not ready',
        checks: {
          agents: { ok: true, target: 'http://agents:8001' },
          database: { ok: false, target: 'db:5432', error: 'refused' },
          redis: { ok: false, target: 'redis:6379', error: 'timeout' },
        },
      },
      error: null,
    }
    const summary = summarize({ health: HEALTHY, ready, version: VERSION })
    assert.equal(summary.state, 'degraded')
    assert.equal(summary.headline, 'API gateway is up but not ready: database, redis unavailable')
    assert.equal(summary.checks.length, 3)
  })

  it('is degraded when readiness itself fails', () => {
    const ready = { status: 0, body: null, error: 'network error' }
    const summary = summarize({ health: HEALTHY, ready, version: VERSION })
    assert.equal(summary.state, 'degraded')
    assert.match(summary.headline, /readiness check answered network error/)
  })

  it("is down with the web server's reason when the gateway is unreachable", () => {
    const health = { status: 502, body: { detail: 'API gateway unreachable' }, error: null }
    const summary = summarize({ health, ready: health, version: health })
    assert.equal(summary.state, 'down')
    assert.equal(summary.headline, 'API gateway is down (API gateway unreachable)')
    assert.equal(summary.version, null)
  })

  it('is down when nothing answers at all', () => {
    const none = { status: 0, body: null, error: 'no answer within 5000 ms' }
    const summary = summarize({ health: none, ready: none, version: none })
    assert.equal(summary.state, 'down')
    assert.match(summary.headline, /web server not reachable: no answer within 5000 ms/)
  })

  it('is unconfigured when the web server has no GATEWAY_URL', () => {
    const health = {
      status: 404,
      body: { detail: 'GATEWAY_URL is not configured; the API gateway is not available' },
      error: null,
    }
    const summary = summarize({ health, ready: health, version: health })
    assert.equal(summary.state, 'unconfigured')
    assert.match(summary.headline, /set GATEWAY_URL/)
  })

  it('is down, not unconfigured, for a gateway that itself answers 404', () => {
    const health = { status: 404, body: { detail: 'Not Found' }, error: null }
    assert.equal(summarize({ health, ready: health, version: health }).state, 'down')
  })
})

describe('loadStatus', () => {
  it('asks the gateway through the web server, and the web server for its version', async () => {
    const { fetch, calls } = fakeFetch({
      '/api/gateway/health': { body: HEALTHY.body },
      '/api/gateway/ready': { body: READY.body },
      '/api/gateway/version': { body: VERSION.body },
      '/version': { body: { version: '0.1.0', revision: 'unknown', build_date: 'unknown' } },
    })
    const summary = await loadStatus({ fetch })
    assert.equal(summary.state, 'up')
    assert.equal(summary.version, '1.4.0 (3f2a9c1d8e7b, built 2025-01-31T10:00:00Z)')
    assert.equal(summary.webVersion, '0.1.0')
    assert.deepEqual(calls.map((call) => call.url).sort(), [
      '/api/gateway/health',
      '/api/gateway/ready',
      '/api/gateway/version',
      '/version',
    ])
  })
})
