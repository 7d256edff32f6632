// What the status page knows about the API gateway, as pure functions: no DOM, no globals.
// The page's server forwards /api/gateway/* to the gateway (see server.mjs).

export const GATEWAY_PREFIX = '/api/gateway'

/** The page-relative URL of a gateway endpoint: gatewayPath('health') -> '/api/gateway/health'. */
export function gatewayPath(endpoint) {
  return `${GATEWAY_PREFIX}/${String(endpoint).replace(/^\/+/, '')}`
}

/**
 * GET `url` and read a JSON body. Never throws: returns { status, body, error } where
 * status is 0 when no HTTP answer arrived, body is null when the answer was not JSON.
 */
export async function fetchJson(url, { fetch = globalThis.fetch, timeoutMs = 5000 } = {}) {
  let response
  try {
    response = await fetch(url, {
      headers: { accept: 'application/json' },
      cache: 'no-store',
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (err) {
    const timedOut = err?.name === 'TimeoutError' || err?.name === 'AbortError'
    return { status: 0, body: null, error: timedOut ? `no answer within ${timeoutMs} ms` : 'network error' }
  }
  let body = null
  try {
    body = await response.json()
  } catch {
    body = null
  }
  return { status: response.status, body, error: null }
}

function detailOf(result) {
  const detail = result.body && typeof result.body === 'object' ? result.body.detail : undefined
  return typeof detail === 'string' && detail ? detail : null
}

/** The gateway's dependency checks from a /ready answer, sorted by name. */
export function readinessChecks(ready) {
  const checks = ready?.body?.checks
  if (!checks || typeof checks !== 'object') return []
  return Object.entries(checks)
    .map(([name, check]) => ({
      name,
      ok: Boolean(check?.ok),
      target: typeof check?.target === 'string' ? check.target : '',
      error: typeof check?.error === 'string' ? check.error : '',
    }))
    .sort((a, b) => a.name.localeCompare(b.name))
}

/** "1.4.0 (3f2a9c1d8e7b, built 2025-01-31T10:00:00Z)", or null without a usable /version. */
export function versionLabel(version) {
  const body = version?.status === 200 ? version.body : null
  if (!body || typeof body.version !== 'string') return null
  const extras = []
  if (body.revision && body.revision !== 'unknown') extras.push(String(body.revision).slice(0, 12))
  if (body.build_date && body.build_date !== 'unknown') extras.push(`built ${body.build_date}`)
  return extras.length ? `${body.version} (${extras.join(', ')})` : body.version
}

/**
 * Turn the answers of /health, /ready and /version into what the page shows:
 * { state: 'up' | 'degraded' | 'down' | 'unconfigured', headline, checks, version }.
 */
export function summarize({ health, ready, version }) {
  const checks = readinessChecks(ready)
  const label = versionLabel(version)
  if (health.status === 404 && /GATEWAY_URL/.test(detailOf(health) ?? '')) {
    return {
      state: 'unconfigured',
      headline: 'No API gateway configured (set GATEWAY_URL on the web server)',
      checks: [],
      version: null,
    }
  }
  if (health.status !== 200) {
    let reason
    if (health.status === 0) reason = `web server not reachable: ${health.error}`
    else reason = detailOf(health) ?? `gateway answered HTTP ${health.status}`
    return { state: 'down', headline: `API gateway is down (${reason})`, checks, version: label }
  }
  if (ready.status === 200) {
    return { state: 'up', headline: 'API gateway is up and ready', checks, version: label }
  }
  const failing = checks.filter((check) => !check.ok).map((check) => check.name)
  const why = failing.length
    ? `not ready: ${failing.join(', ')} unavailable`
    : `readiness check answered ${ready.status === 0 ? ready.error : `HTTP ${ready.status}`}`
  return { state: 'degraded', headline: `API gateway is up but ${why}`, checks, version: label }
}

/** Fetch the gateway's endpoints and the web server's own /version concurrently; summarize. */
export async function loadStatus(options = {}) {
  const [health, ready, version, web] = await Promise.all([
    ...['health', 'ready', 'version'].map((endpoint) => fetchJson(gatewayPath(endpoint), options)),
    fetchJson('/version', options),
  ])
  return { ...summarize({ health, ready, version }), webVersion: versionLabel(web) }
}
