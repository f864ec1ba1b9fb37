-- test_httpc: a response that never comes, awaited in each context, when
-- the daemon is told to stop: every wait ends with nil, "sysshutdown".
-- Records "RESULT <context> <status's values>" for the thread job, the
-- socket-less cosocket and the cosocket with a connection of its own.
-- ARGS: httpPort (its /silent route reads the request and never answers)
local port = math.tointeger(tonumber((...)))
local httpc = require"httpc"
local URL = "http://127.0.0.1:" .. port .. "/silent"

local function wait(ctx)
   local h = httpc.create()
   h:timeout(0) -- no timeout: only the shutdown ends this
   local ok, err = h:request{url = URL}
   if not ok then
      trace("RESULT " .. ctx .. " request " .. tostring(err))
      return
   end
   local st, e = h:status()
   trace("RESULT " .. ctx .. " " .. tostring(st) .. " " .. tostring(e))
end

ba.thread.run(function() wait("thread") end)
ba.socket.event(function() wait("cosocket") end)
ba.socket.event(function(me)
   assert(ba.socket.connect("127.0.0.1", port) == me)
   wait("busy")
end)
