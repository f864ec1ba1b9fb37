-- test_tls: what a TLS connect returns when it cannot succeed, from a
-- cosocket (asynchronous) and from a pool thread (blocking). One record
-- per attempt, then "ERRORS DONE":
--   CONNERR <mode> <label> <values of connect> ms=<elapsed>
-- ARGS: label:port...   (labels name the Python peers: plain, alert,
-- silent, refused)
local args = {...}
local targets = {}
for i = 1, #args do
   local label, port = args[i]:match("^([%w_-]+):(%d+)$")
   targets[#targets + 1] = {label = label, port = math.tointeger(tonumber(port))}
end

-- handshake_timeout bounds the silent peer's case
local client = ba.create.sharkssl(nil, {handshake_timeout = 500})

local function fmt(...)
   local out = {}
   for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
   return table.concat(out, ",")
end

local function attempt(mode, t)
   local t0 = ba.clock()
   local s, err, why = ba.socket.connect("localhost", t.port, {shark = client, timeout = 2000})
   local ms = ba.clock() - t0
   print(string.format("CONNERR\t%s\t%s\t%s\tms=%d", mode, t.label,
      s and "sock" or fmt(s, err, why), ms))
   if s then s:close() end
end

local i = 0
local function nextCosocket()
   i = i + 1
   local t = targets[i]
   if not t then
      ba.thread.run(function()
         for _, tt in ipairs(targets) do attempt("thread", tt) end
         print("ERRORS DONE")
      end)
      return
   end
   ba.socket.event(function()
      attempt("cosocket", t)
      nextCosocket()
   end)
end
nextCosocket()
