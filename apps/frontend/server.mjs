// Production server for the web app: the built static files (dist/), GET /healthz,
// GET /version, and /api/gateway/* forwarded to the API gateway at GATEWAY_URL. Node.js built-ins only.
//
//   node server.mjs                 # PORT=8080 HOST=0.0.0.0 GATEWAY_URL=http://gateway:8000
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import path from 'node:path'
import process from 'node:process'
import { fileURLToPath, pathToFileURL } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))

export const GATEWAY_PREFIX = '/api/gateway'

export const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
}

// Sent with every response; the page loads nothing from other origins.
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
}
const PAGE_POLICY =
  "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'none'"

// RFC 9110 section 7.6.1: connection-specific headers are not forwarded.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 }

/** Cache policy for a static path: Vite's content-hashed /assets/ never change under one name. */
export function cacheControl(urlPath) {
  return urlPath.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache'
}

export function contentType(file) {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream'
}

/** Read the server's settings from environment variables; throws an Error naming the bad one. */
export function configFromEnv(env = process.env) {
  const port = Number(env.PORT ?? 8080)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be a port number (0-65535), not ${JSON.stringify(env.PORT)}`)
  }
  const gatewayUrl = env.GATEWAY_URL || ''
  if (gatewayUrl) {
    let parsed
    try {
      parsed = new URL(gatewayUrl)
    } catch {
      parsed = null
    }
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || parsed.search || parsed.hash) {
      throw new Error(
        `GATEWAY_URL must be an http(s) URL such as http://gateway:8000, not ${JSON.stringify(gatewayUrl)}`,
      )
    }
  }
  const timeout = Number(env.GATEWAY_TIMEOUT_MS ?? 10000)
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new Error(`GATEWAY_TIMEOUT_MS must be a positive number of milliseconds, not ${JSON.stringify(env.GATEWAY_TIMEOUT_MS)}`)
  }
  const logLevel = (env.LOG_LEVEL || 'info').toLowerCase()
  if (!(logLevel in LEVELS)) {
    throw new Error(`LOG_LEVEL must be one of ${Object.keys(LEVELS).join(', ')}, not ${JSON.stringify(env.LOG_LEVEL)}`)
  }
  return {
    host: env.HOST || '0.0.0.0',
    port,
    staticDir: path.resolve(env.STATIC_DIR || path.join(HERE, 'dist')),
    gatewayUrl,
    gatewayTimeoutMs: timeout,
    logLevel,
    version: versionFromEnv(env),
  }
}

/** The build metadata the image records (APP_VERSION, APP_REVISION, APP_BUILD_DATE). */
export function versionFromEnv(env = process.env) {
  return {
    version: env.APP_VERSION || 'dev',
    revision: env.APP_REVISION || 'unknown',
    build_date: env.APP_BUILD_DATE || 'unknown',
  }
}

/** A logger writing one JSON line per event to stderr, dropping events below `level`. */
export function jsonLogger(level = 'info', stream = process.stderr) {
  const threshold = LEVELS[level] ?? LEVELS.info
  return (eventLevel, msg, fields = {}) => {
    if ((LEVELS[eventLevel] ?? 0) < threshold) return
    const line = { ts: new Date().toISOString(), level: eventLevel, service: 'web', msg, ...fields }
    stream.write(`${JSON.stringify(line)}\n`)
  }
}

function sendJson(res, status, body, headers = {}) {
  const payload = Buffer.from(JSON.stringify(body))
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': payload.length,
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(res.req.method === 'HEAD' ? undefined : payload)
}

function sendText(res, status, text, headers = {}) {
  const payload = Buffer.from(`${text}\n`)
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': payload.length,
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(res.req.method === 'HEAD' ? undefined : payload)
}

/** Map a request path to a file under `root`, or null if it is malformed or escapes `root`. */
export function resolveStatic(root, pathname) {
  let decoded
  try {
    decoded = decodeURIComponent(pathname)
  } catch {
    return null
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null
  const segments = decoded.split('/')
  if (segments.includes('..')) return null
  const file = path.resolve(root, `.${path.posix.normalize(`/${decoded}`)}`)
  if (file !== root && !file.startsWith(root + path.sep)) return null
  return file
}

async function serveStatic(req, res, root, pathname) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return sendText(res, 405, 'Method Not Allowed', { allow: 'GET, HEAD' })
  }
  let file = resolveStatic(root, pathname)
  if (file === null) return sendText(res, 404, 'Not Found')
  let stat = await fs.promises.stat(file).catch(() => null)
  if (stat?.isDirectory()) {
    file = path.join(file, 'index.html')
    stat = await fs.promises.stat(file).catch(() => null)
  }
  if (!stat?.isFile()) return sendText(res, 404, 'Not Found')

  const etag = `W/"${stat.size.toString(16)}-${Math.trunc(stat.mtimeMs).toString(16)}"`
  const type = contentType(file)
  const headers = {
    ...SECURITY_HEADERS,
    'content-type': type,
    'cache-control': cacheControl(pathname),
    etag,
    'last-modified': stat.mtime.toUTCString(),
  }
  if (type.startsWith('text/html')) headers['content-security-policy'] = PAGE_POLICY
  const match = req.headers['if-none-match']
  if (match && match.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*')) {
    res.writeHead(304, headers)
    return res.end()
  }
  res.writeHead(200, { ...headers, 'content-length': stat.size })
  if (req.method === 'HEAD') return res.end()
  const stream = fs.createReadStream(file)
  stream.on('error', (err) => res.destroy(err))
  stream.pipe(res)
}

function connectionTokens(headers) {
  const value = headers.connection
  if (!value) return new Set()
  return new Set(
    String(value)
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter(Boolean),
  )
}

function forwardedHeaders(req) {
  const drop = connectionTokens(req.headers)
  const headers = {}
  for (const [name, value] of Object.entries(req.headers)) {
    if (!HOP_BY_HOP.has(name) && !drop.has(name) && name !== 'host') headers[name] = value
  }
  const client = req.socket.remoteAddress
  if (client) {
    const prior = req.headers['x-forwarded-for']
    headers['x-forwarded-for'] = prior ? `${prior}, ${client}` : client
  }
  headers['x-forwarded-proto'] ??= req.socket.encrypted ? 'https' : 'http'
  if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host
  return headers
}

function proxyToGateway(req, res, rest, options, agents, log) {
  if (!options.gatewayUrl) {
    return sendJson(res, 404, {
      detail: 'GATEWAY_URL is not configured; the API gateway is not available',
    })
  }
  const queryAt = rest.indexOf('?')
  const restPath = (queryAt === -1 ? rest : rest.slice(0, queryAt)) || '/'
  const query = queryAt === -1 ? '' : rest.slice(queryAt)
  const segments = restPath.split('/').map((segment) => {
    try {
      return decodeURIComponent(segment)
    } catch {
      return segment
    }
  })
  if (segments.some((segment) => segment === '.' || segment === '..')) {
    return sendJson(res, 400, { detail: "path must not contain '.' or '..' segments" })
  }

  const base = new URL(options.gatewayUrl)
  const target = `${base.origin}${base.pathname.replace(/\/+$/, '')}${restPath}${query}`
  const client = base.protocol === 'https:' ? https : http
  const upstream = client.request(target, {
    method: req.method,
    headers: forwardedHeaders(req),
    agent: base.protocol === 'https:' ? agents.https : agents.http,
    timeout: options.gatewayTimeoutMs,
  })
  let timedOut = false
  upstream.on('timeout', () => {
    timedOut = true
    upstream.destroy(new Error(`no response within ${options.gatewayTimeoutMs} ms`))
  })
  upstream.on('response', (answer) => {
    const drop = connectionTokens(answer.headers)
    const headers = {}
    for (const [name, value] of Object.entries(answer.headers)) {
      if (!HOP_BY_HOP.has(name) && !drop.has(name)) headers[name] = value
    }
    res.writeHead(answer.statusCode ?? 502, headers)
    answer.on('error', (err) => res.destroy(err))
    answer.pipe(res)
  })
  upstream.on('error', (err) => {
    const error = err.code || err.message || err.name
    log('warn', timedOut ? 'gateway timed out' : 'gateway unreachable', {
      method: req.method,
      path: restPath,
      error,
    })
    if (res.headersSent) return res.destroy(err)
    if (timedOut) return sendJson(res, 504, { detail: 'API gateway timed out' })
    return sendJson(res, 502, { detail: 'API gateway unreachable', error })
  })
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy()
  })
  req.pipe(upstream)
}

/**
 * Make the web server (not yet listening).
 *
 * options: staticDir (the built front end), gatewayUrl ('' disables /api/gateway/*),
 * gatewayTimeoutMs, version (the /version body), log (level, msg, fields) => void.
 */
export function createServer(options = {}) {
  const settings = {
    staticDir: path.resolve(options.staticDir ?? path.join(HERE, 'dist')),
    gatewayUrl: options.gatewayUrl ?? '',
    gatewayTimeoutMs: options.gatewayTimeoutMs ?? 10000,
    version: options.version ?? versionFromEnv({}),
  }
  const log = options.log ?? jsonLogger(options.logLevel)
  const agents = {
    http: new http.Agent({ keepAlive: true }),
    https: new https.Agent({ keepAlive: true }),
  }

  const server = http.createServer(async (req, res) => {
    const started = process.hrtime.bigint()
    const url = req.url ?? '/'
    const queryAt = url.indexOf('?')
    const pathname = queryAt === -1 ? url : url.slice(0, queryAt)
    res.on('finish', () => {
      if (pathname === '/healthz') return
      const ms = Number(process.hrtime.bigint() - started) / 1e6
      log('info', 'request', {
        method: req.method,
        path: pathname,
        status: res.statusCode,
        ms: Math.round(ms * 10) / 10,
      })
    })
    try {
      if (!pathname.startsWith('/')) return sendText(res, 400, 'Bad Request')
      if (pathname === '/healthz') {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          return sendJson(res, 405, { detail: 'method not allowed' }, { allow: 'GET, HEAD' })
        }
        return sendJson(res, 200, { status: 'ok' })
      }
      if (pathname === '/version') {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          return sendJson(res, 405, { detail: 'method not allowed' }, { allow: 'GET, HEAD' })
        }
        return sendJson(res, 200, settings.version)
      }
      if (pathname === GATEWAY_PREFIX || pathname.startsWith(`${GATEWAY_PREFIX}/`)) {
        return proxyToGateway(req, res, url.slice(GATEWAY_PREFIX.length), settings, agents, log)
      }
      return await serveStatic(req, res, settings.staticDir, pathname)
    } catch (err) {
      log('error', 'request failed', { method: req.method, path: pathname, error: String(err) })
      if (!res.headersSent) return sendText(res, 500, 'Internal Server Error')
      res.destroy()
    }
  })
  server.on('close', () => {
    agents.http.destroy()
    agents.https.destroy()
  })
  return server
}

function main() {
  let config
  try {
    config = configFromEnv(process.env)
  } catch (err) {
    jsonLogger('error')('error', err.message)
    process.exit(2)
  }
  const log = jsonLogger(config.logLevel)
  if (!fs.existsSync(path.join(config.staticDir, 'index.html'))) {
    log('warn', 'no index.html in the static directory: run `pnpm build` first', {
      static_dir: config.staticDir,
    })
  }
  const server = createServer({ ...config, log })
  server.listen(config.port, config.host, () => {
    const { address, port } = server.address()
    log('info', 'listening', {
      address,
      port,
      static_dir: config.staticDir,
      gateway: config.gatewayUrl || null,
    })
  })
  // As PID 1 in a container, Node.js has no default handler for these signals.
  const stop = (signal) => {
    log('info', 'stopping', { signal })
    server.close(() => process.exit(0))
    server.closeIdleConnections()
    setTimeout(() => process.exit(0), 10_000).unref()
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  main()
}
