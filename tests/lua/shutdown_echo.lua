-- test_shutdown: an echo server whose handlers answer "sysshutdown\n" when
-- the daemon stops (their read returns nil,"sysshutdown") and then return.
-- A client that sent "BIG <n>" first gets n bytes ("0123456789" repeated)
-- before that line, to show that queued writes drain before the close.
-- ARGS: port
local port = ...

local function echo(sock)
   local big = 0
   while true do
      local data, err = sock:read()
      if not data then
         if err == "sysshutdown" then
            if big > 0 then
               sock:write(string.rep("0123456789", big // 10 + 1):sub(1, big))
            end
            sock:write("sysshutdown\n")
         end
         return
      end
      big = math.tointeger(tonumber(data:match("^BIG (%d+)$"))) or big
      sock:write(data)
   end
end

require"testlib".acceptEach(port, function(s) s:event(echo, "s") end)
