-- test_systemd: the echo server its cases run, as a module (a generated
-- script in a temporary directory calls it with its own reply prefix, so a
-- reload can be seen to run the script as changed on disk).
--
-- serve(port, prefix, fdname) listens on 127.0.0.1:port (through fdname when
-- given, which adopts an inherited socket of that FileDescriptorName),
-- traces "listening on ADDR:PORT", and answers each read with prefix..data.
-- A read "SPIN <seconds>\n" busy-loops the Lua thread (no yield, so the
-- dispatcher loop stalls) for that much CPU time, then answers "spun\n";
-- "SPIN forever\n" never returns.
local M = {}

local function spin(seconds)
   local stop = seconds and os.clock() + seconds
   while not stop or os.clock() < stop do end
end

local function handler(prefix)
   return function(sock)
      while true do
         local data = sock:read()
         if not data then return end
         local what = data:match("^SPIN (%S+)\n$")
         local reply
         if what then
            spin(what ~= "forever" and tonumber(what) or nil)
            reply = "spun\n"
         else
            reply = prefix .. data
         end
         if not sock:write(reply) then return end
      end
   end
end

-- Returns the listening socket; raises when it cannot listen.
function M.serve(port, prefix, fdname)
   local p = math.tointeger(tonumber(port))
   if not p then error("systemd_lib.serve: bad port " .. tostring(port), 0) end
   if fdname == "" then fdname = nil end
   local ls, err, why = ba.socket.bind(p, {intf = "127.0.0.1", fdname = fdname})
   if not ls then
      error(string.format("cannot listen on %d: %s (%s)", p, err, why), 0)
   end
   local addr, lport = ls:sockname()
   trace(string.format("listening on %s:%d", addr, lport))
   local serve = handler(prefix or "")
   ls:event(function(l)
      while true do
         local s = l:accept()
         if not s then break end
         s:event(serve, "s")
      end
   end)
   return ls
end

return M
