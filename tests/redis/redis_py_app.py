"""An ordinary application's calls through redis-py with its default settings.

Goal: show that the current redis-py (8.x), which speaks RESP3 unless told otherwise, works
against the server at HOST:PORT. Method: each call below is one step an application makes
(pipelines, WATCH/MULTI, scripts with register_script's NOSCRIPT fallback, INFO, CONFIG GET,
SCAN iteration, hgetall, zrange withscores, many connections); each checks its result by
value. Prints one line per call and `calls: passed P of T`; exits 1 if any call failed.

Usage: python3 redis_py_app.py HOST PORT
"""

import sys
import threading

import redis


def main(host, port):
    r = redis.Redis(host=host, port=port, decode_responses=True)
    calls = []

    def call(name, check):
        try:
            outcome = check()
            ok = outcome is True
            detail = "" if ok else f"got {outcome!r}"
        except Exception as error:  # every failure is reported, none stops the run
            ok, detail = False, f"{type(error).__name__}: {error}"
        calls.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}".rstrip(), flush=True)

    call("ping", lambda: r.ping())
    call("protocol is RESP3", lambda: r.client_info()["resp"] == "3")
    call("flushdb", lambda: r.flushdb())
    call("set/get", lambda: r.set("k", "v") and r.get("k") == "v")
    call("set ex, ttl", lambda: r.set("e", "1", ex=100) and 98 <= r.ttl("e") <= 100)
    call("incr, incrby", lambda: r.incr("n") == 1 and r.incrby("n", 5) == 6)
    call("missing get is None", lambda: r.get("nosuch") is None)
    call("hset mapping, hgetall", lambda: r.hset("h", mapping={"a": "1", "b": "2"}) == 2
         and r.hgetall("h") == {"a": "1", "b": "2"})
    call("hincrby, hget", lambda: r.hincrby("h", "a", 4) == 5 and r.hget("h", "a") == "5")
    call("sadd, smembers", lambda: r.sadd("s", "x", "y") == 2 and r.smembers("s") == {"x", "y"})
    call("zadd, zrange withscores", lambda: r.zadd("z", {"a": 1.5, "b": 2}) == 2
         and r.zrange("z", 0, -1, withscores=True) == [("a", 1.5), ("b", 2.0)])
    call("zscore, zincrby", lambda: r.zscore("z", "a") == 1.5 and r.zincrby("z", 1, "a") == 2.5)
    call("zrangebyscore withscores", lambda: r.zrangebyscore("z", "-inf", "+inf", withscores=True)
         == [("b", 2.0), ("a", 2.5)])
    call("lpush, lrange, lpop count", lambda: r.rpush("l", "a", "b", "c") == 3
         and r.lrange("l", 0, -1) == ["a", "b", "c"] and r.lpop("l", 2) == ["a", "b"])

    def pipeline():
        with r.pipeline(transaction=False) as pipe:
            pipe.incr("p").incr("p").get("p").hgetall("h")
            return pipe.execute() == [1, 2, "2", {"a": "5", "b": "2"}]

    call("pipeline", pipeline)

    def multi():
        with r.pipeline() as pipe:
            pipe.set("m", "1").incr("m").zscore("z", "b")
            return pipe.execute() == [True, 2, 2.0]

    call("MULTI/EXEC pipeline", multi)

    def watched(pipe):
        value = int(pipe.get("w") or 0)
        pipe.multi()
        pipe.set("w", value + 1)

    call("WATCH transaction", lambda: r.transaction(watched, "w") == [True] and r.get("w") == "1")

    script = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    call("register_script (NOSCRIPT, then load)", lambda: script(keys=["sc"], args=[3]) == 3)
    call("script after SCRIPT FLUSH", lambda: r.script_flush() and script(keys=["sc"], args=[4]) == 7)
    call("eval returning a table", lambda: r.eval("return {KEYS[1], ARGV[1], 3}", 1, "x", "y")
         == ["x", "y", 3])
    call("info", lambda: r.info()["redis_version"] == "7.0.15")
    call("info keyspace", lambda: "db0" in r.info("keyspace"))
    call("config get", lambda: r.config_get("maxmemory") == {"maxmemory": "0"})

    def scan():
        r.mset({f"scan:{i}": i for i in range(300)}) if hasattr(r, "mset") else None
        return sorted(r.scan_iter("scan:*", count=50)) == sorted(f"scan:{i}" for i in range(300))

    call("scan_iter", scan)
    call("expire, pttl, persist", lambda: r.expire("k", 50) and 0 < r.pttl("k") <= 50000
         and r.persist("k"))

    def many_connections():
        errors = []

        def worker():
            client = redis.Redis(host=host, port=port, decode_responses=True)
            try:
                for _ in range(20):
                    client.incr("many")
            except Exception as error:
                errors.append(error)
            finally:
                client.close()

        threads = [threading.Thread(target=worker) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return not errors and r.get("many") == "1000" or errors

    call("50 connections at once", many_connections)
    call("lock (Lua under the hood)", lambda: (lambda lock: lock.acquire(blocking=False)
                                                and lock.locked() and (lock.release() or True))(r.lock("lk", timeout=5)))
    call("delete, exists", lambda: r.delete("k", "n") == 2 and r.exists("k", "n") == 0)

    passed = sum(calls)
    print(f"calls: passed {passed} of {len(calls)} (redis-py {redis.__version__})")
    return 0 if passed == len(calls) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
