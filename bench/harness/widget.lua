-- A chat-widget request for wrk, as bench/harness runs it:
--   wrk ... -s widget.lua URL -- fixed bench-2   the same access token on every request
--   wrk ... -s widget.lua URL -- fresh           a new token, bench-<n>, on every request
-- done() prints one line, BENCH key=value..., that the harness reads.

local threads = {}

function setup(thread)
	table.insert(threads, thread)
	thread:set("thread_no", #threads)
end

function init(args)
	mode = args[1]
	sent = 0
	wrk.headers["X-Bot-Id"] = "bench"
	wrk.headers["Origin"] = "https://shop.example.com"
	if mode == "fixed" then
		wrk.headers["X-Access-Token"] = args[2]
		-- Without a request function wrk builds the request once: no Lua per request.
		request = nil
	elseif mode ~= "fresh" then
		error("widget.lua: want 'fixed <token>' or 'fresh', got " .. tostring(mode))
	end
end

function request()
	sent = sent + 1
	-- Tokens stay unique across threads: the thread number, then 9 digits of count.
	wrk.headers["X-Access-Token"] = string.format("bench-%d%09d", thread_no, sent)
	return wrk.format()
end

function done(summary, latency, requests)
	local sent_all = 0
	for _, thread in ipairs(threads) do
		sent_all = sent_all + (thread:get("sent") or 0)
	end
	local e = summary.errors
	io.write(string.format(
		"BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d sent=%d\n",
		summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout, sent_all))
end
