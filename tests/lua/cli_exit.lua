-- test_cli: cosockd.exit(code) at top level, or from a timer while a
-- listener keeps the daemon busy.  ARGS: code ["timer"]
local code, where = ...
code = math.tointeger(tonumber(code))
if where == "timer" then
   local s = assert(ba.socket.bind(0, {intf = "127.0.0.1"}))
   s:event(function(ls)
      while ls:accept() do end
   end)
   ba.timer(function() cosockd.exit(code) end):set(50, true)
else
   cosockd.exit(code)
end
