-- test_thread: an "s" cosocket echo server whose latency is measured while
-- pool threads sit in blocking reads. A connection that sends
-- "START-BLOCKERS <n> <ms>" starts n ba.thread jobs, each connecting to
-- blockPort (a peer that never answers) and reading with an ms timeout.
-- ARGS: port blockPort
local port, blockPort = ...
blockPort = math.tointeger(tonumber(blockPort))
local lib = require"testlib"

ba.thread.configure(16)

local function startBlockers(n, ms)
   for i = 1, n do
      ba.thread.run(function()
         local s, err = ba.socket.connect("127.0.0.1", blockPort)
         if not s then trace("blocker " .. i .. " connect failed", err) return end
         trace("blocker " .. i .. " reading")
         local t0 = ba.clock()
         local d, e = s:read(ms)
         trace(string.format("blocker %d read done %s %d", i, tostring(e), ba.clock() - t0))
         s:close()
      end)
   end
end

lib.acceptEach(port, function(s)
   s:event(function(sock)
      while true do
         local d = sock:read()
         if not d then break end
         local n, ms = d:match("^START%-BLOCKERS (%d+) (%d+)$")
         if n then
            startBlockers(tonumber(n), tonumber(ms))
            sock:write("started")
         else
            sock:write(d)
         end
      end
   end, "s")
end)
