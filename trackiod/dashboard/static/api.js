// Requests to the dashboard's JSON API. The token, when the page was opened with one, goes in a header
// (the page's cookie covers scripts and styles, which cannot carry headers).
const pageToken = new URLSearchParams(location.search).get('token');

function headers() {
  return pageToken ? { 'X-Trackiod-Token': pageToken } : {};
}

export function apiUrl(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

// The answer index.html asked for before the modules loaded, for the first request of the same URL.
function early(url) {
  const asked = window.trackiodEarly;
  if (!asked || asked.url !== url) return null;
  window.trackiodEarly = null;
  return asked.answer;
}

export async function getJSON(path, params) {
  const url = apiUrl(path, params);
  const asked = early(url);
  if (asked) return asked;
  const res = await fetch(url, { headers: headers() });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

// One chart's data in the binary form: uint32 header length, JSON header, then float64 x and y arrays.
export async function getChart(params) {
  const res = await fetch(apiUrl('/api/chart', { ...params, format: 'bin' }), { headers: headers() });
  if (!res.ok) throw new Error(`chart ${params.key}: ${res.status} ${await res.text()}`);
  const buf = await res.arrayBuffer();
  const headLen = new DataView(buf).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, headLen)));
  const n = header.n;
  let offset = 4 + headLen;
  const x = new Float64Array(buf, offset, n);
  offset += n * 8;
  const ys = header.series.map(() => {
    const y = new Float64Array(buf, offset, n);
    offset += n * 8;
    return y;
  });
  return { header, x, ys };
}

// A binary answer (/api/sweep) as an ArrayBuffer.
export async function getBuffer(path, params) {
  const res = await fetch(apiUrl(path, params), { headers: headers() });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.arrayBuffer();
}

// A write (an edit of a run): JSON in, the daemon's answer out; the error message of a refusal as the Error's.
export async function postJSON(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { ...headers(), 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(answer.error || `${path}: ${res.status}`);
  return answer;
}
