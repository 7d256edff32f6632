import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'

import { cacheControl, configFromEnv, createServer, resolveStatic } from '../server.mjs'

const INDEX = '<!doctype html><title>status</title><script type="module" src="/assets/app-1a2b3c.js"></script>\n'

/** Send one request with the path exactly as given (fetch would normalize '..' away). */
function request(base, rawPath, { method = 'GET', headers = {}, body } = {}) {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const options = { hostname, port, path: rawPath, method, headers, agent: false }
    const req = http.request(options, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let json = null
        try {
          json = JSON.parse(text)
        } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, json })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${server.address().port}`
}

async function close(server) {
  server.closeAllConnections?.()
  await new Promise((resolve) => server.close(resolve))
}

/** A static root `<tmp>/www` with a `<tmp>/secret.txt` beside it for traversal attempts. */
function makeStaticDir() {
  const outer = fs.mkdtempSync(path.join(os.tmpdir(), 'web-static-'))
  const root = path.join(outer, 'www')
  fs.mkdirSync(path.join(root, 'assets'), { recursive: true })
  fs.writeFileSync(path.join(root, 'index.html'), INDEX)
  fs.writeFileSync(path.join(root, 'assets', 'app-1a2b3c.js'), 'console.log("app")\n')
  fs.writeFileSync(path.join(root, 'assets', 'app-4d5e6f.css'), 'body{margin:0}\n')
  fs.writeFileSync(path.join(root, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>')
  fs.writeFileSync(path.join(root, 'data.bin'), Buffer.from([0, 1, 2]))
  fs.writeFileSync(path.join(outer, 'secret.txt'), 'secret')
  return root
}

const quiet = () => {}

describe('static files', () => {
  let root
  let server
  let base
  before(async () => {
    root = makeStaticDir()
    server = createServer({ staticDir: root, log: quiet })
    base = await listen(server)
  })
  after(async () => {
    await close(server)
    fs.rmSync(path.dirname(root), { recursive: true, force: true })
  })

  it('serves index.html at / as HTML that browsers revalidate', async () => {
    const res = await request(base, '/')
    assert.equal(res.status, 200)
    assert.equal(res.text, INDEX)
    assert.equal(res.headers['content-type'], 'text/html; charset=utf-8')
    assert.equal(res.headers['cache-control'], 'no-cache')
    assert.equal(res.headers['content-length'], String(Buffer.byteLength(INDEX)))
    assert.match(res.headers['content-security-policy'], /default-src 'self'/)
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
  })

  it('serves hashed assets with their type and a year-long immutable cache', async () => {
    const js = await request(base, '/assets/app-1a2b3c.js')
    assert.equal(js.status, 200)
    assert.equal(js.text, 'console.log("app")\n')
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8')
    assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable')
    const css = await request(base, '/assets/app-4d5e6f.css')
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8')
  })

  it('names other types correctly and falls back to octet-stream', async () => {
    const svg = await request(base, '/favicon.svg')
    assert.equal(svg.headers['content-type'], 'image/svg+xml')
    assert.equal(svg.headers['cache-control'], 'no-cache')
    const bin = await request(base, '/data.bin')
    assert.equal(bin.headers['content-type'], 'application/octet-stream')
  })

  it('answers a matching If-None-Match with 304 and no body', async () => {
    const first = await request(base, '/')
    assert.ok(first.headers.etag)
    const again = await request(base, '/', { headers: { 'if-none-match': first.headers.etag } })
    assert.equal(again.status, 304)
    assert.equal(again.text, '')
    const other = await request(base, '/', { headers: { 'if-none-match': 'W/"nope"' } })
    assert.equal(other.status, 200)
  })

  it('answers HEAD with headers only', async () => {
    const res = await request(base, '/assets/app-1a2b3c.js', { method: 'HEAD' })
    assert.equal(res.status, 200)
    assert.equal(res.text, '')
    assert.equal(res.headers['content-length'], String('console.log("app")\n'.length))
  })

  it('returns 404 for missing files', async () => {
    const res = await request(base, '/missing.js')
    assert.equal(res.status, 404)
    assert.equal(res.headers['cache-control'], 'no-store')
  })

  for (const attempt of [
    '/../secret.txt',
    '/..%2fsecret.txt',
    '/assets/..%2f..%2fsecret.txt',
    '/%2e%2e/secret.txt',
    '/assets/../../secret.txt',
    '/%00index.html',
    '/%E0%A4%A',
  ]) {
    it(`does not serve anything outside the root: ${attempt}`, async () => {
      const res = await request(base, attempt)
      assert.ok([400, 404].includes(res.status), `status ${res.status}`)
      assert.doesNotMatch(res.text, /secret/)
    })
  }

  it('refuses other methods with 405 and Allow', async () => {
    const res = await request(base, '/', { method: 'POST', body: 'x' })
    assert.equal(res.status, 405)
    assert.equal(res.headers.allow, 'GET, HEAD')
  })
})

describe('GET /healthz', () => {
  it('is 200 JSON even without a gateway or built files', async () => {
    const server = createServer({ staticDir: '/nonexistent', log: quiet })
    const base = await listen(server)
    try {
      const res = await request(base, '/healthz')
      assert.equal(res.status, 200)
      assert.deepEqual(res.json, { status: 'ok' })
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
      assert.equal(res.headers['cache-control'], 'no-store')
      const head = await request(base, '/healthz', { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.text, '')
    } finally {
      await close(server)
    }
  })
})

describe('GET /version', () => {
  it('reports the build metadata it was given', async () => {
    const version = { version: '1.2.3', revision: 'abc123', build_date: '2025-01-31T10:00:00Z' }
    const server = createServer({ staticDir: '/nonexistent', log: quiet, version })
    const base = await listen(server)
    try {
      const res = await request(base, '/version')
      assert.equal(res.status, 200)
      assert.deepEqual(res.json, version)
    } finally {
      await close(server)
    }
  })
})

describe('/api/gateway/* forwarding', () => {
  let upstream
  let upstreamBase
  const seen = []
  before(async () => {
    upstream = http.createServer((req, res) => {
      const chunks = []
      req.on('data', (chunk) => chunks.push(chunk))
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString()
        seen.push({ method: req.method, url: req.url, headers: req.headers, body })
        if (req.url.startsWith('/slow')) return // never answers
        if (req.url.startsWith('/ready')) {
          res.writeHead(503, { 'content-type': 'application/json', 'x-upstream': 'yes' })
          return res.end(JSON.stringify({ status: 'not ready' }))
        }
        res.writeHead(200, {
          'content-type': 'application/json',
          'x-upstream': 'yes',
          connection: 'keep-alive, x-hop',
          'x-hop': 'drop me',
        })
        res.end(JSON.stringify({ method: req.method, url: req.url, body }))
      })
    })
    upstreamBase = await listen(upstream)
  })
  after(() => close(upstream))

  async function withWeb(options, fn) {
    const server = createServer({ staticDir: '/nonexistent', log: quiet, ...options })
    const base = await listen(server)
    try {
      await fn(base)
    } finally {
      await close(server)
    }
  }

  it('forwards GET with the prefix stripped and the query kept', async () => {
    await withWeb({ gatewayUrl: upstreamBase }, async (base) => {
      const res = await request(base, '/api/gateway/health?verbose=1&x=%20y')
      assert.equal(res.status, 200)
      assert.deepEqual(res.json, { method: 'GET', url: '/health?verbose=1&x=%20y', body: '' })
      assert.equal(res.headers['x-upstream'], 'yes')
      assert.equal(res.headers['x-hop'], undefined, 'a header named in Connection is hop-by-hop')
      const received = seen.at(-1).headers
      assert.equal(received['x-forwarded-for'], '127.0.0.1')
      assert.equal(received['x-forwarded-proto'], 'http')
      assert.equal(received['x-forwarded-host'], base.slice('http://'.length))
    })
  })

  it('passes the upstream status through', async () => {
    await withWeb({ gatewayUrl: upstreamBase }, async (base) => {
      const res = await request(base, '/api/gateway/ready')
      assert.equal(res.status, 503)
      assert.deepEqual(res.json, { status: 'not ready' })
    })
  })

  it('forwards method and body, and drops hop-by-hop request headers', async () => {
    await withWeb({ gatewayUrl: upstreamBase }, async (base) => {
      const res = await request(base, '/api/gateway/api/agents/tasks', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          connection: 'x-private',
          'x-private': 'not for upstream',
          'x-request-id': 'abc',
        },
        body: '{"kind":"echo"}',
      })
      assert.equal(res.status, 200)
      assert.deepEqual(res.json, { method: 'POST', url: '/api/agents/tasks', body: '{"kind":"echo"}' })
      const received = seen.at(-1).headers
      assert.equal(received['x-private'], undefined)
      assert.equal(received['x-request-id'], 'abc')
      assert.equal(received['content-type'], 'application/json')
    })
  })

  it('keeps a path prefix in GATEWAY_URL', async () => {
    await withWeb({ gatewayUrl: `${upstreamBase}/base/` }, async (base) => {
      const res = await request(base, '/api/gateway/version')
      assert.equal(res.json.url, '/base/version')
      const root = await request(base, '/api/gateway')
      assert.equal(root.json.url, '/base/')
    })
  })

  it("refuses '..' segments instead of forwarding them", async () => {
    await withWeb({ gatewayUrl: upstreamBase }, async (base) => {
      const count = seen.length
      for (const attempt of ['/api/gateway/../admin', '/api/gateway/%2e%2e/admin']) {
        const res = await request(base, attempt)
        assert.equal(res.status, 400, attempt)
      }
      assert.equal(seen.length, count)
    })
  })

  it('does not treat /api/gatewayX as the gateway prefix', async () => {
    await withWeb({ gatewayUrl: upstreamBase }, async (base) => {
      const res = await request(base, '/api/gatewayx/health')
      assert.equal(res.status, 404)
      assert.equal(res.json, null)
    })
  })

  it('is 404 JSON when no gateway is configured', async () => {
    await withWeb({ gatewayUrl: '' }, async (base) => {
      const res = await request(base, '/api/gateway/health')
      assert.equal(res.status, 404)
      assert.match(res.json.detail, /GATEWAY_URL/)
    })
  })

  it('is 502 JSON when the gateway is unreachable', async () => {
    const closed = http.createServer()
    const closedBase = await listen(closed)
    await close(closed)
    await withWeb({ gatewayUrl: closedBase }, async (base) => {
      const res = await request(base, '/api/gateway/health')
      assert.equal(res.status, 502)
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
      assert.equal(res.json.detail, 'API gateway unreachable')
      assert.equal(res.json.error, 'ECONNREFUSED')
    })
  })

  it('is 504 JSON when the gateway does not answer in time', async () => {
    await withWeb({ gatewayUrl: upstreamBase, gatewayTimeoutMs: 200 }, async (base) => {
      const started = Date.now()
      const res = await request(base, '/api/gateway/slow')
      assert.equal(res.status, 504)
      assert.equal(res.json.detail, 'API gateway timed out')
      assert.ok(Date.now() - started < 5000)
    })
  })
})

describe('request log', () => {
  it('logs one line per request, but not health probes', async () => {
    const events = []
    const server = createServer({
      staticDir: '/nonexistent',
      log: (level, msg, fields) => events.push({ level, msg, ...fields }),
    })
    const base = await listen(server)
    try {
      await request(base, '/healthz')
      await request(base, '/missing')
    } finally {
      await close(server)
    }
    assert.equal(events.length, 1)
    assert.deepEqual(
      { level: events[0].level, msg: events[0].msg, path: events[0].path, status: events[0].status },
      { level: 'info', msg: 'request', path: '/missing', status: 404 },
    )
  })
})

describe('configFromEnv', () => {
  it('has defaults for a container', () => {
    const config = configFromEnv({})
    assert.equal(config.host, '0.0.0.0')
    assert.equal(config.port, 8080)
    assert.equal(config.gatewayUrl, '')
    assert.equal(config.gatewayTimeoutMs, 10000)
    assert.equal(config.logLevel, 'info')
    assert.deepEqual(config.version, { version: 'dev', revision: 'unknown', build_date: 'unknown' })
    assert.ok(path.isAbsolute(config.staticDir) && config.staticDir.endsWith('dist'))
  })

  it('reads every variable', () => {
    const config = configFromEnv({
      HOST: '127.0.0.1',
      PORT: '9000',
      GATEWAY_URL: 'https://gateway.example:8443/prefix',
      GATEWAY_TIMEOUT_MS: '2500',
      STATIC_DIR: '/srv/www',
      LOG_LEVEL: 'WARN',
      APP_VERSION: '1.2.3',
      APP_REVISION: 'abc123',
      APP_BUILD_DATE: '2025-01-31T10:00:00Z',
    })
    assert.deepEqual(config, {
      host: '127.0.0.1',
      port: 9000,
      gatewayUrl: 'https://gateway.example:8443/prefix',
      gatewayTimeoutMs: 2500,
      staticDir: path.resolve('/srv/www'),
      logLevel: 'warn',
      version: { version: '1.2.3', revision: 'abc123', build_date: '2025-01-31T10:00:00Z' },
    })
  })

  for (const [env, message] of [
    [{ PORT: 'http' }, /PORT must be a port number/],
    [{ PORT: '70000' }, /PORT must be a port number/],
    [{ GATEWAY_URL: 'gateway:8000' }, /GATEWAY_URL must be an http\(s\) URL/],
    [{ GATEWAY_URL: 'ftp://gateway' }, /GATEWAY_URL must be an http\(s\) URL/],
    [{ GATEWAY_TIMEOUT_MS: '0' }, /GATEWAY_TIMEOUT_MS must be a positive number/],
    [{ LOG_LEVEL: 'verbose' }, /LOG_LEVEL must be one of debug, info, warn, error/],
  ]) {
    it(`rejects ${JSON.stringify(env)}`, () => {
      assert.throws(() => configFromEnv(env), message)
    })
  }
})

describe('pure helpers', () => {
  it('caches only /assets/ for a year', () => {
    assert.equal(cacheControl('/assets/index-abc.js'), 'public, max-age=31536000, immutable')
    assert.equal(cacheControl('/index.html'), 'no-cache')
    assert.equal(cacheControl('/assetsx/a.js'), 'no-cache')
  })

  it('resolves paths inside the root and nothing else', () => {
    const root = path.resolve('/srv/www')
    assert.equal(resolveStatic(root, '/'), root)
    assert.equal(resolveStatic(root, '/assets/a%20b.js'), path.join(root, 'assets', 'a b.js'))
    assert.equal(resolveStatic(root, '//assets/a.js'), path.join(root, 'assets', 'a.js'))
    assert.equal(resolveStatic(root, '/../etc/passwd'), null)
    assert.equal(resolveStatic(root, '/%2e%2e/etc/passwd'), null)
    assert.equal(resolveStatic(root, '/a%5c..%5c..%5cetc'), null)
    assert.equal(resolveStatic(root, '/%zz'), null)
  })
})
