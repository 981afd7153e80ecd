-- wrk script for the keyturn benchmark (see bench/wrk.py, which runs it).
--
-- Why a script at all: wrk's own text output is meant for people, and its latency percentiles are
-- only printed in a fixed set with unit suffixes. done() below prints one JSON line instead, which
-- bench/wrk.py parses. The script also covers the two load shapes plain `wrk -H` cannot:
--   BENCH_TOKENS_FILE  one token per line; each request carries "Authorization: Bearer <next
--                      token>", rotating, so a server cannot serve every request from a cache
--   BENCH_TOKEN_HEADER, BENCH_TOKEN_PREFIX  carry the token in another header (e.g. "Cookie"
--                      with prefix "refresh_token="); and when the POST body contains {{token}},
--                      the token goes there instead of in a header (refresh storms)
--   BENCH_BODY_FILE    POST this file's content as application/json (login storms)
--   BENCH_THREADS      wrk's -t, so that threads start at different places in the token list
-- Headers given with -H (e.g. a repeated Authorization header) are kept in every request.

local tokens_file = os.getenv("BENCH_TOKENS_FILE")
local body_file = os.getenv("BENCH_BODY_FILE")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
local token_header = os.getenv("BENCH_TOKEN_HEADER") or "Authorization"
local token_prefix = os.getenv("BENCH_TOKEN_PREFIX") or "Bearer "
local BODY_SLOT = "{{token}}"

local next_thread_index = 0

function setup(thread)
  thread:set("thread_index", next_thread_index)
  next_thread_index = next_thread_index + 1
end

local function read_all(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

local function copy_headers()
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  return headers
end

-- One request carrying `token`: in the body when the body has a slot for it, else in a header.
local function format_with(token)
  local headers = copy_headers()
  local start, finish = nil, nil
  if wrk.body then
    start, finish = wrk.body:find(BODY_SLOT, 1, true)
  end
  if start then
    local body = wrk.body:sub(1, start - 1) .. token .. wrk.body:sub(finish + 1)
    return wrk.format(nil, nil, headers, body)
  end
  headers[token_header] = token_prefix .. token
  return wrk.format(nil, nil, headers)
end

-- Requests are formatted once, in init(), so that the per-request cost on the load generator is the
-- same table lookup whether tokens rotate or not (defining request() makes wrk call it for every
-- request in both cases, which keeps the client's cost identical across the contenders).
local prepared = {}
local cursor = 1

function init(args)
  if body_file then
    wrk.method = "POST"
    wrk.body = read_all(body_file)
    wrk.headers["Content-Type"] = "application/json"
  end
  if tokens_file == nil then
    prepared[1] = wrk.format()
  else
    for line in io.lines(tokens_file) do
      if #line > 0 then
        prepared[#prepared + 1] = format_with(line)
      end
    end
    assert(#prepared > 0, "BENCH_TOKENS_FILE holds no token")
    local stride = math.floor(#prepared / thread_count)
    cursor = ((thread_index or 0) * stride) % #prepared + 1
  end
end

function request()
  local req = prepared[cursor]
  cursor = cursor % #prepared + 1
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
