-- Seed 003, Example 9: cosocket echo server ("s" mode). ARGS: port
local port = ...

-- ---- Example 9, unchanged --------------------------------------------
local function echoCoroutine(sock)
   assert(sock == ba.socket.getsock()) -- true for cosockets
   assert(true == sock:owner()) -- true for cosockets
   while true do
      local data = sock:read()
      if not data then break end
      sock:write(data)
   end
end
-- ----------------------------------------------------------------------

-- Not in the seed: example 3.b's server socket; the seed's last two lines
-- run once for every accepted connection.
require"testlib".serveSeed(port, function(getMyServerSocket)
   local sock=getMyServerSocket() -- See example 3.b for how to create a server socket
   sock:event(echoCoroutine, "s")
end)
