-- test_tls: a TLS echo server and a plain echo server on 127.0.0.1 in one
-- cosockd, every connection an "s" cosocket. Records:
--   "TLS echo listening on ADDR:PORT", "plain echo listening on ADDR:PORT"
--   "BASELINE total=<n> active=<n>"    ba.socket.stat() once both listen
--   "END <tls|plain> <err> <why> active=<n>" when a connection ends, with
--                                      ba.socket.stat()'s active count after
--                                      the socket was closed
-- ARGS: certFile keyFile [handshake_timeout_ms] [flags]
--   flags, comma-separated: "greet" (each TLS cosocket first writes
--   "hello\n", before its handshake can have completed; "s" mode only),
--   "r" (TLS connections are "r"-mode cosockets instead of "s")
local certFile, keyFile, hsTimeout, flags = ...
hsTimeout = math.tointeger(tonumber(hsTimeout))
flags = "," .. (flags or "") .. ","
local greet = flags:find(",greet,", 1, true) ~= nil
local tlsMode = flags:find(",r,", 1, true) and "r" or "s"

local server = ba.tls.server{cert = certFile, key = keyFile, handshake_timeout = hsTimeout}

local function echo(s, kind)
   if greet and kind == "tls" then
      -- the cosocket starts right after accept: the handshake is not done
      local ok, werr = s:write("hello\n")
      if not ok then print("GREET failed " .. tostring(werr)) end
   end
   while true do
      local d, err, why = s:read()
      if not d then
         s:close()
         local _, active = ba.socket.stat()
         print(string.format("END %s %s %s active=%d", kind, tostring(err), tostring(why), active))
         return
      end
      if not s:write(d) then
         s:close()
         local _, active = ba.socket.stat()
         print(string.format("END %s writefailed nil active=%d", kind, active))
         return
      end
   end
end

local function listen(op, kind, mode)
   op.intf = "127.0.0.1"
   local ls, err, why = ba.socket.bind(0, op)
   if not ls then error(string.format("cannot listen: %s (%s)", err, why), 0) end
   ls:event(function(l)
      while true do
         local s = l:accept()
         if not s then break end
         s:event(echo, mode, kind)
      end
   end, "r")
   local addr, p = ls:sockname()
   return addr, p
end

print(string.format("TLS echo listening on %s:%d", listen({shark = server}, "tls", tlsMode)))
print(string.format("plain echo listening on %s:%d", listen({}, "plain", "s")))
local total, active = ba.socket.stat()
print(string.format("BASELINE total=%d active=%d", total, active))
