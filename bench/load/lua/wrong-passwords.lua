-- The attacker of the guessing-flood case: every request tries a new random wrong password for
-- one of the existing users (BENCH_VICTIMS, comma-separated), so no cache can answer it.
local victims = {}
for name in string.gmatch(os.getenv("BENCH_VICTIMS") or "", "[^,]+") do
  victims[#victims + 1] = name
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = text:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function char(shift)
      local k = math.floor(n / 2 ^ shift) % 64
      return alphabet:sub(k + 1, k + 1)
    end
    out[#out + 1] = char(18) .. char(12) .. (b and char(6) or "=") .. (c and char(0) or "=")
  end
  return table.concat(out)
end

local counter = 0

function init(args)
  -- Each wrk thread has its own Lua state; the table address tells threads apart.
  math.randomseed(os.time() + (tonumber((tostring({}):match("0x(%x+)")) or "0", 16) or 0) % 1000003)
end

function request()
  counter = counter + 1
  local user = victims[(counter % #victims) + 1]
  local guess = string.format("guess-%d-%d", counter, math.random(1, 1000000000))
  return wrk.format("GET", "/api/2.0/mlflow/experiments/search", { ["Authorization"] = "Basic " .. base64(user .. ":" .. guess) })
end

-- Refusals that carry Retry-After come from a lockout (the password was not even checked);
-- counted per thread, summed in done(), which runs in the main Lua state.
local threads = {}
refused_by_lockout = 0

function setup(thread)
  threads[#threads + 1] = thread
end

function response(status, headers, body)
  if headers["Retry-After"] or headers["retry-after"] then
    refused_by_lockout = refused_by_lockout + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("refused_by_lockout") or 0)
  end
  io.write(string.format("lockout-refusals %d\n", total))
end
