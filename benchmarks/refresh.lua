-- wrk script: rotate refresh tokens in chains against flask-refresh.
--
-- Each request presents a token taken from the thread's pool, and each 200
-- response puts the returned successor back, so every connection keeps one
-- chain going. The pool starts with the lines of the file BENCH_TOKENS_FILE,
-- dealt out to the BENCH_WRK_THREADS threads. Give each thread one token per
-- connection plus SPARE_TOKENS (servers.py does): wrk 4.1 builds one request per
-- thread before connecting that it never sends, which takes a token out of the
-- pool. A request finding the pool empty sends an invalid token, which the
-- server rejects with 400 and wrk counts under "Non-2xx or 3xx responses".

local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

function init(args)
  local thread_count = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
  pool = {}
  local index = 0
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    if index % thread_count == thread_id then
      table.insert(pool, line)
    end
    index = index + 1
  end
end

function request()
  local token = table.remove(pool) or "pool-empty"
  return wrk.format(
    "POST",
    wrk.path,
    { ["Content-Type"] = "application/json" },
    '{"refresh_token": "' .. token .. '"}'
  )
end

function response(status, headers, body)
  if status == 200 then
    local token = string.match(body, '"refresh_token":%s*"([^"]+)"')
    if token then
      table.insert(pool, token)
    end
  end
end
