-- Seed 003, Example 13: the cosocket proxy. ARGS: port serverName serverPort
local port, name, serverPort = ...
serverName = name -- the seed uses a global
serverPort = math.tointeger(tonumber(serverPort))

-- ---- Example 13, unchanged except the upstream port (was 80) and the
-- ---- listen address -----------------------------------------------------
local function webProxy(source, sink)
   while true do
      local data = source:read()
      if not data or not sink:write(data) then break end
   end
end

local function webProxyClient(client,server)
   -- ba.socket.connect returns socket or nil if it fails
   if ba.socket.connect(serverName,serverPort) ~= client then return end
   server:enable(client)
   webProxy(client, server)
   client:close()
end

local function webProxyServer(server)
   ba.socket.event(webProxyClient, server)
   local client = server:disable()
   webProxy(server, client)
   server:close()
end

local function accept(s)
   while true do
      local s = s:accept(s)
      s:event(webProxyServer,"s")
   end
end

local s = require"testlib".listen(port) -- was: ba.socket.bind(8080)
s:event(accept)
