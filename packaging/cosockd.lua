-- /etc/cosockd/cosockd.lua - the cosockd configuration.
--
-- cosockd reads this file when it starts and again on reload
-- (`systemctl reload cosockd`, or SIGHUP to the daemon). Check a change
-- before reloading:  cosockd --check -c /etc/cosockd/cosockd.lua
--
-- The file is Lua, run in a sandbox: it may compute values (string, table,
-- math, utf8, os.getenv, and `confdir` / `datadir`, the directories of this
-- file and of cosockd's data), but every global it sets must be one of the
-- settings below; `local` variables are free. Options given on the command
-- line override these settings. Each setting below shows its default.

-- Worker processes: 1-1024, or "auto" for one per CPU cosockd may use.
workers = 1

-- Event loop: "auto" (io_uring when the kernel allows it), "uring" or "epoll".
backend = "auto"

-- Connection slots per worker, 1-4194304 (bounded by the open-file limit).
max_connections = 262144

-- ba.thread pool threads per worker (started on demand), 1-1024.
threads = 8

-- Where ba.openio("vm") keeps files; nil: as --state-dir ($STATE_DIRECTORY under systemd).
state_dir = nil

-- Seconds queued writes may drain when the daemon stops, 0-3600.
shutdown_grace = 5

-- Seconds old workers may finish their connections after a reload, 0-86400.
reload_grace = 30

-- The scripts every worker runs, in order: a path, or {path, arg1, arg2, ...}.
-- Relative paths are looked up next to this file, then in the data directory
-- (/usr/share/cosockd). default.lua: echo on 127.0.0.1:9000, the proxy on
-- 127.0.0.1:8080 in front of it, a web server on 127.0.0.1:8088.
scripts = {
   "default.lua",
   -- {"myapp.lua", "arg1", "arg2"},
}
