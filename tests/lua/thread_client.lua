-- test_threads: a ba.thread job that connects to peerPort and reads until
-- the connection fails, tracing "got <n>" per chunk and then
-- "ended <values of the failing read>". ARGS: peerPort
local peerPort = math.tointeger(tonumber((...)))
ba.thread.run(function()
   local s, err = ba.socket.connect("127.0.0.1", peerPort)
   if not s then trace("connect failed", err) return end
   while true do
      local r = table.pack(s:read(10000))
      if not r[1] then
         trace("ended", table.unpack(r, 2, r.n))
         break
      end
      trace("got " .. #r[1])
   end
   local st, valid = s:state()
   trace("state", st, valid)
end)
