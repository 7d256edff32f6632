// The status page: polls the gateway through the web server and renders the summary.
import './style.css'
import { loadStatus } from './status.js'

const REFRESH_MS = 15_000

const $ = (id) => document.getElementById(id)

function cell(text, className) {
  const td = document.createElement('td')
  td.textContent = text
  if (className) td.className = className
  return td
}

function render(summary) {
  $('status').dataset.state = summary.state
  $('headline').textContent = summary.headline
  $('version').textContent = summary.version ?? '—'
  $('web-version').textContent = summary.webVersion ?? '—'
  $('checked').textContent = new Date().toLocaleTimeString()
  const rows = summary.checks.map((check) => {
    const tr = document.createElement('tr')
    tr.append(
      cell(check.name),
      cell(check.target || '—'),
      cell(check.ok ? 'ok' : check.error || 'failing', check.ok ? 'ok' : 'failing'),
    )
    return tr
  })
  if (!rows.length) {
    const tr = document.createElement('tr')
    const known = summary.state === 'up' || summary.state === 'degraded'
    const td = cell(known ? 'None configured on the gateway.' : 'Unknown: the gateway did not answer.')
    td.colSpan = 3
    tr.append(td)
    rows.push(tr)
  }
  $('checks').replaceChildren(...rows)
}

let timer
async function refresh() {
  clearTimeout(timer)
  $('refresh').disabled = true
  try {
    render(await loadStatus())
  } finally {
    $('refresh').disabled = false
    timer = setTimeout(refresh, REFRESH_MS)
  }
}

$('refresh').addEventListener('click', refresh)
refresh()
