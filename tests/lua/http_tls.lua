-- test_http: HTTPS. Two cosockd.http servers on 127.0.0.1 serving ROOT
-- with the certificate CERTFILE/KEYFILE (PEM): "tlsserver" made with
-- ba.tls.server{}, "sharkssl" with ba.create.sharkssl + sharkcert as the
-- original product's scripts do. Each has a function page /hi.
-- Records: "READY tlsserver <port>", "READY sharkssl <port>".
-- ARGS: root certFile keyFile
local root, certFile, keyFile = ...

local function slurp(name)
   local f = assert(io.open(name))
   local d = f:read("a")
   f:close()
   return d
end

local function serve(name, shark)
   local srv = assert(cosockd.http{port = 0, intf = "127.0.0.1", root = root, shark = shark})
   srv:page("/hi", function(request, response)
      response:setcontenttype("text/plain")
      response:write("hi over ", name, " ", request:method())
   end)
   trace(string.format("READY %s %d", name, srv:port()))
end

serve("tlsserver", ba.tls.server{cert = certFile, key = keyFile})

local cert = assert(ba.create.sharkcert(slurp(certFile), slurp(keyFile)))
local shark = ba.create.sharkssl(nil, {server = true})
shark:addcert(cert)
serve("sharkssl", shark)
