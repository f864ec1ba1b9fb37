-- test_workers: an echo server run by every worker on one shared port.
-- Each connection first gets "worker W/N pid P\n", so the test knows who
-- serves it. ARGS: port ["crash" W]: worker W exits with status 3 50 ms
-- after its listener is open (a worker that keeps dying: os.exit, since
-- cosockd.exit would stop the whole daemon).
local port, mode, victim = ...
local pid = io.open("/proc/self/stat"):read("n")
local greeting = string.format("worker %d/%d pid %d\n", cosockd.worker, cosockd.workers, pid)
require"testlib".acceptEach(port, function(s)
   s:event(function(sock)
      if not sock:write(greeting) then return end
      while true do
         local data = sock:read()
         if not data or not sock:write(data) then break end
      end
   end, "s")
end)
if mode == "crash" and cosockd.worker == math.tointeger(tonumber(victim)) then
   ba.timer(function() os.exit(3) end):set(50, true)
end
