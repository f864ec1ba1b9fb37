-- Seed 003's Example 3 (3.a, 3.b, 3.c): an HTTPS "Hello World!" server whose
-- requests are served with blocking calls on pool threads, with the TLS
-- server object made from the "vm" IO's .certificate/MakoServer.pem/.key.
-- Changes from the seed text, and only these: the functions are defined
-- before the code that uses them (the seed shows 3.a first), the listener
-- binds 127.0.0.1 and the port given as ARG 1 (0: any free port) instead of
-- 9443 on every interface, and the port is traced for the harness.
-- ARGS: port
local port = math.tointeger(tonumber((...))) or 0

-- Example 3.c
-- Function running in the context of the Lua thread pool.
-- s is the blocking socket.
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

-- Example 3.b
-- Accept thread waiting asynchronously for client connections
local function acceptCoroutine(sock)
   while true do
      -- Method accept yields and resumes when a client connects.
      local s = sock:accept()
      if not s then break end -- Server terminating
      ba.thread.run(function() webServer(s) end)
   end
end

-- Example 3.a
-- Create a SharkSSL certificate by using the certificate stored in
-- the internal ZIP file.
local iovm = ba.openio("vm")
local certf=".certificate/MakoServer.%s"
local cert,err=ba.create.sharkcert(
     iovm, string.format(certf,"pem"),
     string.format(certf,"key"), "sharkssl")
if not cert then error"Certificate not found" end

-- Create a SharkSSL server object by using the above certificate
local sharkobj=ba.create.sharkssl(nil,{server=true})
sharkobj:addcert(cert)

-- Create a secure (SSL) server listening socket object.
local s=ba.socket.bind(port, {shark=sharkobj, intf="127.0.0.1"}) -- was: bind(9443, {shark=sharkobj})
trace(string.format("listening on %s:%d", s:sockname()))
-- Run the socket "accept" function.
s:event(acceptCoroutine,"r")
