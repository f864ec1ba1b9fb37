-- Seed 003, Example 10: cosocket client connection. ARGS: host port
local host, port = ...
port = math.tointeger(tonumber(port))

-- ---- Example 10, unchanged except the address --------------------------
local function sockCoroutine(sock,address,port)
   -- sock is not connected
   local socket,err=ba.socket.connect(address,port)
   if socket then -- If connect succeded
      while true do
         assert(socket == sock) -- we have one cosocket
         local data
         socket:write"hello"
         data,err = socket:read()
         if not data then break end
         trace(data)
      end
      if err then
         trace("Socket err:",err)
      end
   else
      trace("ba.socket.connect failed:",err)
   end
end
ba.socket.event(sockCoroutine, host, port)
