-- test_tls: the TLS object API checked by the script itself on loopback
-- ("CHECK <name> ok|FAIL <why>", then "CHECKS DONE"): ba.openio, the
-- certificate, certstore and SharkSSL objects and their errors, the
-- ba.tls.* aliases, ALPN, the TLS queries on plain and TLS sockets.
-- ARGS: stateDir (the absolute path cosockd was given with --state-dir; it
-- holds certs/ with ca.pem, bundle.pem (two CAs), localhost.pem,
-- localhost.key, localhost-enc.key (encrypted, password "sharkssl") and
-- wrongname.key)
local stateDir = ...
local lib = require"testlib"
local check = lib.check
local LO = "127.0.0.1"

local function slurp(name)
   local f = assert(io.open(name))
   local d = f:read("a")
   f:close()
   return d
end
local certDir = stateDir .. "/certs/"
local caPem = slurp(certDir .. "ca.pem")
local certPem = slurp(certDir .. "localhost.pem")
local keyPem = slurp(certDir .. "localhost.key")

-- ---- ba.openio ------------------------------------------------------------
local vm = ba.openio("vm")
check("openio.vm", vm ~= nil, vm)
check("openio.home", ba.openio("home") ~= nil)
check("openio.disk", ba.openio("disk") ~= nil)
check("openio.unknown_nil", ba.openio("no-such-io") == nil)
local rp, rperr = vm:realpath("certs/ca.pem")
check("openio.realpath", rp == certDir .. "ca.pem", rp, rperr)
local st = vm:stat("certs/ca.pem")
check("openio.stat_file", type(st) == "table" and st.size == #caPem and st.type == "regular"
   and math.type(st.mtime) == "integer", st and st.size, st and st.type, st and st.mtime)
local std = vm:stat("certs")
check("openio.stat_dir", type(std) == "table" and std.type == "directory", std and std.type)
check("openio.stat_missing", vm:stat("certs/no-such-file") == nil)
local fh, oerr = vm:open("certs/ca.pem")
check("openio.open", fh ~= nil and fh:read("a") == caPem, oerr)
if fh then fh:close() end
local fm, fmerr = vm:open("certs/no-such-file")
check("openio.open_missing", fm == nil and type(fmerr) == "string", fm, fmerr)
-- the first ba.openio("vm") made the default certificate in the state dir
local gst = vm:stat(".certificate/MakoServer.pem")
local kst = vm:stat(".certificate/MakoServer.key")
check("openio.generated_cert", gst and gst.type == "regular" and gst.size > 0
   and kst and kst.type == "regular" and kst.size > 0)

-- ---- certificates -------------------------------------------------------------
local cert, cerr = ba.create.sharkcert(vm, "certs/localhost.pem", "certs/localhost.key")
check("sharkcert.io", cert ~= nil, cerr)
local c2, c2err = ba.create.sharkcert(certPem, keyPem)
check("sharkcert.pem_text", c2 ~= nil, c2err)
local b1, b1e = ba.create.sharkcert("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", keyPem)
check("sharkcert.bad_cert", b1 == nil and b1e == "pem_cert_parse_error", b1, b1e)
local b2, b2e = ba.create.sharkcert(certPem, "not a key")
check("sharkcert.bad_key", b2 == nil and b2e == "pem_key_parse_error", b2, b2e)
local b3, b3e = ba.create.sharkcert(vm, "certs/localhost.pem", "certs/wrongname.key")
check("sharkcert.mismatch", b3 == nil and b3e == "key_cert_mismatch", b3, b3e)
local e1, e1e = ba.create.sharkcert(vm, "certs/localhost.pem", "certs/localhost-enc.key", "sharkssl")
check("sharkcert.encrypted_key", e1 ~= nil, e1e)
local e2, e2e = ba.create.sharkcert(vm, "certs/localhost.pem", "certs/localhost-enc.key", "wrong")
check("sharkcert.encrypted_key_wrong_password", e2 == nil and type(e2e) == "string", e2, e2e)
local m1, m1e = ba.create.sharkcert(vm, "certs/no-such.pem", "certs/localhost.key")
check("sharkcert.io_missing_file", m1 == nil and type(m1e) == "string", m1, m1e)

-- ---- certstore ----------------------------------------------------------------
local store = ba.create.certstore()
local n1 = store:addcert(slurp(certDir .. "bundle.pem"))
check("certstore.addcert_bundle", n1 == 2, n1)
local n2 = store:addcert(vm, "certs/ca.pem")
check("certstore.addcert_io", n2 == 1, n2)
local n3, n3e = store:addcert("garbage")
check("certstore.addcert_bad", n3 == nil and type(n3e) == "string", n3, n3e)

-- ---- SharkSSL objects ---------------------------------------------------------
local srv = ba.create.sharkssl(nil, {server = true, alpn = "h2,http/1.1"})
check("sharkssl.addcert", srv:addcert(cert) == true)
local bare = ba.create.sharkssl(nil, {server = true})
local okb = pcall(ba.socket.bind, 0, {shark = bare, intf = LO})
check("sharkssl.bind_without_cert_raises", not okb)
-- (to a port where something listens, so that the TCP connect succeeds)
local idle = assert(ba.socket.bind(0, {intf = LO}))
local okc, okv, oke = pcall(ba.socket.connect, LO, select(2, idle:sockname()),
   {shark = srv, timeout = 2000})
idle:close()
check("sharkssl.connect_with_server_raises", not okc, okc, okv, oke)
local sc1, sc2 = ba.sharkclient(), ba.sharkclient()
check("sharkclient.shared", sc1 ~= nil and rawequal(sc1, sc2))

-- ---- a TLS server (ALPN h2,http/1.1) and a plain one, in this script ------------
local serverSide = {}
local function serve(ls, kind)
   ls:event(function(l)
      while true do
         local s = l:accept()
         if not s then break end
         s:event(function(c)
            while true do
               local d = c:read()
               if not d then break end
               if d == "ALPN?\n" then
                  c:write(tostring(c:alpn()) .. "\n")
               else
                  c:write(d)
               end
            end
            c:close()
         end, "s")
      end
   end, "r")
   return select(2, ls:sockname())
end
local tlsPort = serve(assert(ba.socket.bind(0, {shark = srv, intf = LO})), "tls")
local plainPort = serve(assert(ba.socket.bind(0, {intf = LO})), "plain")
local baseTotal, baseActive = ba.socket.stat()

local steps = lib.steps()

-- Run body(sock | nil, err, why) in a new cosocket after an asynchronous
-- connect, then go on with the next step.
local function connectStep(port, op, body)
   steps:add(function()
      ba.socket.event(function()
         local s, err, why = ba.socket.connect("localhost", port, op)
         local ok, e = pcall(body, s, err, why)
         if not ok then trace("CHECK step" .. steps.ix .. " FAIL " .. tostring(e)) end
         if s then s:close() end
         steps:next()
      end)
   end)
end

local function ask(s, line)
   s:write(line)
   return s:read(5000)
end

connectStep(plainPort, {}, function(s)
   check("plain.connected", s ~= nil)
   local c, ce = s:certificate()
   check("plain.certificate", c == nil and ce == "sslnotenabled", c, ce)
   local ci, cie = s:cipher()
   check("plain.cipher", ci == nil and cie == "sslnotenabled", ci, cie)
   check("plain.alpn", s:alpn() == nil)
end)

connectStep(tlsPort, {shark = ba.create.sharkssl(store), alpn = "http/1.1"}, function(s, err, why)
   check("tls.connected", s ~= nil, err, why)
   check("tls.echo", ask(s, "abc\n") == "abc\n")
   local c, trustedCA = s:certificate()
   check("tls.certificate", type(c) == "table" and c.subject.commonname == "localhost"
      and c.subject.countryname == "SE" and c.subject.province == "Stockholm"
      and c.subject.locality == "Kista" and c.subject.organization == "cosockd tests"
      and c.subject.unit == "tls" and c.issuer.commonname == "cosockd test CA"
      and c.issuer.organization == "cosockd tests",
      c and c.subject and c.subject.commonname, c and c.issuer and c.issuer.commonname)
   local san = c and c.san or {}
   local hasLocalhost = false
   for _, n in ipairs(san) do if n == "localhost" then hasLocalhost = true end end
   check("tls.certificate_san", hasLocalhost, table.concat(san, ","))
   check("tls.certificate_dates", c and c.tzfrom ~= nil and c.tzto ~= nil, c and c.tzfrom, c and c.tzto)
   check("tls.certificate_trustedCA", trustedCA == true, trustedCA)
   local ci = s:cipher()
   check("tls.cipher", type(ci) == "string" and ci:match("^[A-Z0-9_]+$") and not ci:match("^TLS_"), ci)
   check("tls.trusted", s:trusted() == true, s:trusted())
   check("tls.not_resumed", s:isresumed() == false)
   check("alpn.client_http11", s:alpn() == "http/1.1", s:alpn())
   check("alpn.server_http11", ask(s, "ALPN?\n") == "http/1.1\n")
end)

connectStep(tlsPort, {shark = ba.create.sharkssl(store), alpn = "h2,http/1.1"}, function(s, err)
   check("alpn.server_preference", s and s:alpn() == "h2", s and s:alpn(), err)
end)

connectStep(tlsPort, {shark = ba.create.sharkssl(store)}, function(s, err)
   check("alpn.none_offered", s and s:alpn() == nil, s and s:alpn(), err)
end)

for _, v in ipairs{{"pem", caPem}, {"file", certDir .. "ca.pem"}, {"certstore", store}} do
   connectStep(tlsPort, {shark = ba.tls.client{ca = v[2], verify = true}}, function(s, err, why)
      check("tls.client_ca_" .. v[1], s ~= nil and s:trusted() == true, err, why)
   end)
end

-- The system CA store (/etc/ssl/certs, Debian's ca-certificates) does not
-- know the test CA: the name passes, the CA not.
local sysClient, sysErr = ba.tls.client{}
check("tls.client_system_store_loaded", sysClient ~= nil, sysErr)
if sysClient then
   connectStep(tlsPort, {shark = sysClient}, function(s, err)
      local t, code
      if s then t, code = s:trusted() end
      check("tls.client_system_store", s ~= nil and t == nil and code == "cn", err, t, code)
   end)
end
connectStep(tlsPort, {shark = ba.sharkclient()}, function(s, err)
   local t, code
   if s then t, code = s:trusted() end
   check("sharkclient.untrusted_test_ca", s ~= nil and t == nil and code == "cn", err, t, code)
end)
if sysClient then
   connectStep(tlsPort, {shark = ba.tls.client{verify = true}}, function(s, err)
      check("tls.client_system_store_verify", s == nil and err == "sslnottrusted", s, err)
   end)
end

-- Everything closed: the count is back where it was (the server side of
-- the last connection closes when it reads the end, so poll up to 3 s).
steps:add(function()
   local tries = 0
   ba.timer(function()
      tries = tries + 1
      local total, active = ba.socket.stat()
      if active ~= baseActive and tries < 150 then return true end
      check("stat.back_to_baseline", active == baseActive, baseTotal, baseActive, total, active)
      steps:next()
      return false
   end):set(20, true)
end)

steps:next()
