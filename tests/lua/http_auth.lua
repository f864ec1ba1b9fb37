-- test_http: two cosockd.http servers on 127.0.0.1 serving ROOT with HTTP
-- Basic authentication on /private/ and /wsauth.lsp: "users" checks a
-- users table (alice/secret), "check" a check function (bob/builder).
-- Both grant "carol" through the session hook when the request has the
-- cookie session=let-me-in. Records: "READY users <port>", "READY check <port>".
-- ARGS: root
local root = ...

local function session(request)
   if request:cookie("session") == "let-me-in" then return "carol" end
   return nil
end
local protect = {"/private/", "/wsauth.lsp"}

local byTable = assert(cosockd.http{
   port = 0, intf = "127.0.0.1", root = root,
   auth = {realm = "cosockd-test", users = {alice = "secret"}, session = session,
           protect = protect},
})
local byCheck = assert(cosockd.http{
   port = 0, intf = "127.0.0.1", root = root,
   auth = {realm = "checked realm",
           check = function(user, password) return user == "bob" and password == "builder" end,
           session = session, protect = protect},
})
trace(string.format("READY users %d", byTable:port()))
trace(string.format("READY check %d", byCheck:port()))
