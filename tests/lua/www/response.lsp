<?lsp
-- test_http: the response object; ?mode= picks what to do. No newline
-- ends this file: text after the last tag would be written too
local mode = request:data("mode")
if mode == "status" then
   response:setstatus(201)
   response:setheader("X-Custom", "custom value")
   response:setcontenttype("text/plain; charset=us-ascii")
   response:write("a", 1, true, 2.5)
elseif mode == "flush" then
   response:setcontenttype("text/plain")
   local before = response:committed()
   response:write("part one\n")
   response:flush()
   local after = response:committed()
   for i = 1, 200 do response:write("line ", i, " of the part after flush\n") end
   response:write("committed before=", before, " after=", after, "\n")
elseif mode == "flushlen" then
   local body = string.rep("0123456789", 10)
   response:setcontenttype("text/plain")
   response:setheader("Content-Length", tostring(#body))
   response:write(body:sub(1, 30))
   response:flush()
   response:write(body:sub(31))
elseif mode == "error" then
   response:senderror(404, "custom missing page")
elseif mode == "redirect" then
   response:sendredirect("/hello.lsp")
else
   print("default mode")
end
?>