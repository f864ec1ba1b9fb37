-- bench/ws_echo.lua - cosockd's WebSocket echo server for bench/compare's
-- ws section, written against the issue 6 API the way a user would:
--
--   cosockd --backend=uring|epoll bench/ws_echo.lua PORT
--
-- An HTTP server on 127.0.0.1:PORT (0: any free port; the daemon logs
-- "http: listening on ADDR:PORT") with one page, /echo, that upgrades the
-- request with ba.socket.req2sock and hands the WebSocket to a cosocket
-- ("s" mode) that sends every message back as it came, text as text.
-- A message that arrives in pieces (read's fragment form: chunk, isText,
-- bytesRead, frameLen, until bytesRead == frameLen) is put back together
-- first, so the echo is one message of the same length, as the load
-- generator checks.

local port = tonumber(arg and arg[1] or "")
if not port then
	error("usage: cosockd bench/ws_echo.lua PORT")
end

local function echo(s)
	local parts, n = {}, 0
	while true do
		local data, isText, got, len = s:read()
		if not data then
			break
		end
		if got and got < len then
			n = n + 1
			parts[n] = data
		else
			if n > 0 then
				parts[n + 1] = data
				data = table.concat(parts, "", 1, n + 1)
				parts, n = {}, 0
			end
			s:write(data, isText)
		end
	end
end

local srv, err, why = cosockd.http{port = port, intf = "127.0.0.1"}
if not srv then
	error(string.format("cannot listen on 127.0.0.1:%d: %s %s", port, tostring(err), tostring(why or "")))
end

srv:page("/echo", function(request, response)
	local s = ba.socket.req2sock(request)
	if s then
		s:event(echo, "s")
	end
end)
