-- The seed's examples that use pool threads and "r"-mode sockets (seed 003:
-- Examples 1, 3, 4, 6, 7 and 8, and the UDP/NTP Example 1 as "ntp"), as close to the text as the seed gives
-- them. LSP pages become ba.thread.run jobs, which is where an LSP page's
-- code runs (a pool thread). Where the seed shows no code (4.a, 6, 7), the
-- function follows its description. ARGS: example port [peerPort]
local example, port, peerPort = ...
peerPort = math.tointeger(tonumber(peerPort))
local lib = require"testlib"

if example == "1" then
   -- Example 1 (an LSP page), against a local RFC 868 time server.
   ba.thread.run(function()
      local s,err = ba.socket.connect("127.0.0.1",peerPort) -- was: time.nist.gov,37
      if s then
         local d
         d,err = s:read(5000) -- Wait a maximum of 5 seconds for response
         if d and #d == 4 then
            -- Create 32 bit word from received data in network endian.
            local t = ba.socket.n2h(4,d)
            t = t - 2208988800 -- Convert from 1900 to 1970 format
            print("NTP Date and time:",os.date("!%Y-%m-%d %H:%M:%S",t))
         end
         s:close()
      end
      if err then
         print(err)
      end
   end)

elseif example == "ntp" then
   -- Seed 003's UDP Example 1 (an LSP page), against a local NTP-style
   -- responder instead of pool.ntp.org.
   ba.thread.run(function()
      local s,err = ba.socket.udpcon("127.0.0.1",peerPort) -- was: pool.ntp.org,123
      if s then
         s:write(string.char(27)..string.char(0):rep(47))
         local d,err=s:read(5000)
         if d and #d == 48 then
            local secs = ba.socket.n2h(4,d,41)
            secs = secs - 2208988800 -- Convert from 1900 to 1970 format
            print("NTP Date and time:",os.date("!%Y-%m-%d %H:%M:%S",secs))
         end
         s:close()
      end
   end)

elseif example == "3" then
   -- Example 3 without TLS: the accept cosocket hands each connection to a
   -- pool thread, which serves it with blocking calls.
   local function webServer(s)
       -- Read request
      local data,err = s:read(2000)
      -- Ignore request -- i.e. discard data.
      -- Send the same response for any URL requested
      local msg = "Hello World!"
      s:write(string.format(
                  "%s\r\n%s\r\n%s%d\r\n\r\n%s",
                  "HTTP/1.0 200 OK",
                  "Content-Type: text/plain",
                  "Content-Length: ",
                  #msg, msg))
      s:close()
   end
   local function acceptCoroutine(sock)
      while true do
         -- Method accept yields and resumes when a client connects.
         local s = sock:accept()
         if not s then break end -- Server terminating
         ba.thread.run(function() webServer(s) end)
      end
   end
   local s = lib.listen(port) -- was: ba.socket.bind(9443,{shark=shark})
   s:event(acceptCoroutine,"r")

elseif example == "4" then
   -- Example 4.a (from its description) and 4.b.
   local function sockCoroutine(sock)
      while true do
         local data = sock:read()
         if not data then break end
         trace("received", data)
      end
      trace("sockCoroutine done")
   end
   local address = "127.0.0.1"
   local sock,err=ba.socket.connect(address,peerPort)
   if sock then
      sock:event(sockCoroutine)
   else
      trace("ba.socket.connect failed:",err)
   end

elseif example == "6" then
   -- Example 6: Example 1 with the read moved into an "r" cosocket.
   ba.thread.run(function()
      local s,err = ba.socket.connect("127.0.0.1",peerPort)
      if s then
         s:event(function(s)
            local d,err = s:read(5000)
            if d and #d == 4 then
               local t = ba.socket.n2h(4,d) - 2208988800
               print("NTP Date and time:",os.date("!%Y-%m-%d %H:%M:%S",t))
            else
               print(err)
            end
         end)
      else
         print(err)
      end
   end)

elseif example == "7" or example == "8" then
   local echoCoroutine
   if example == "7" then
      -- Example 7 (from its description): an "r" cosocket echo that writes
      -- itself.
      echoCoroutine = function(sock)
         while true do
            local data = sock:read()
            if not data then break end
            sock:write(data)
         end
      end
   else
      -- Example 8, unchanged.
      echoCoroutine = function(sock)
         while true do
            local data = sock:read()
            if not data then break end
            ba.thread.run(function() sock:write(data) end)
         end
      end
   end
   lib.serveSeed(port, function(getMyServerSocket)
      local sock=getMyServerSocket() -- See example 3.b for how to create a server socket
      sock:event(echoCoroutine)
   end)
end
