// An ordinary application's calls through go-redis, the client new-api uses.
//
// Goal: show that go-redis works against the server at HOST:PORT. Debian packages only
// go-redis v5 (gopkg.in/redis.v5, RESP2, no HELLO); new-api's v9 is not packaged and the
// Go module proxy is out of reach here. Method: each call below is one step an application
// makes (pipelines, WATCH/MULTI, Script.Run with its EVALSHA-then-EVAL fallback after
// SCRIPT FLUSH, INFO, CONFIG GET, SCAN iteration, many goroutines on one pool); each checks
// its result by value. Prints one line per call and `calls: passed P of T`; exits 1 if any
// call failed.
//
// Usage: GO111MODULE=off GOPATH=/usr/share/gocode go run main.go HOST PORT
package main

import (
	"crypto/sha1"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"gopkg.in/redis.v5"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go_redis_app HOST PORT")
		os.Exit(2)
	}
	client := redis.NewClient(&redis.Options{
		Addr:     os.Args[1] + ":" + os.Args[2],
		PoolSize: 20,
	})
	defer client.Close()
	passed, total := 0, 0
	call := func(name string, check func() error) {
		total++
		if err := check(); err != nil {
			fmt.Printf("FAIL %s %v\n", name, err)
			return
		}
		passed++
		fmt.Printf("ok   %s\n", name)
	}
	expect := func(got, want interface{}, err error) error {
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("got %#v, want %#v", got, want)
		}
		return nil
	}

	call("ping", func() error { got, err := client.Ping().Result(); return expect(got, "PONG", err) })
	call("flushdb", func() error { return client.FlushDb().Err() })
	call("set/get", func() error {
		if err := client.Set("k", "v", 0).Err(); err != nil {
			return err
		}
		got, err := client.Get("k").Result()
		return expect(got, "v", err)
	})
	call("set with expiration, ttl", func() error {
		if err := client.Set("e", "1", 100*time.Second).Err(); err != nil {
			return err
		}
		ttl, err := client.TTL("e").Result()
		if err == nil && (ttl < 98*time.Second || ttl > 100*time.Second) {
			return fmt.Errorf("ttl %v", ttl)
		}
		return err
	})
	call("incr, incrby", func() error {
		if got, err := client.Incr("n").Result(); err != nil || got != 1 {
			return expect(got, int64(1), err)
		}
		got, err := client.IncrBy("n", 5).Result()
		return expect(got, int64(6), err)
	})
	call("missing get is redis.Nil", func() error {
		if _, err := client.Get("nosuch").Result(); err != redis.Nil {
			return fmt.Errorf("got %v", err)
		}
		return nil
	})
	call("hmset, hgetall", func() error {
		if err := client.HMSet("h", map[string]string{"a": "1", "b": "2"}).Err(); err != nil {
			return err
		}
		got, err := client.HGetAll("h").Result()
		return expect(got, map[string]string{"a": "1", "b": "2"}, err)
	})
	call("sadd, smembers", func() error {
		if err := client.SAdd("s", "x").Err(); err != nil {
			return err
		}
		got, err := client.SMembers("s").Result()
		return expect(got, []string{"x"}, err)
	})
	call("zadd, zrange withscores", func() error {
		if err := client.ZAdd("z", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: 2, Member: "b"}).Err(); err != nil {
			return err
		}
		got, err := client.ZRangeWithScores("z", 0, -1).Result()
		return expect(got, []redis.Z{{Score: 1.5, Member: "a"}, {Score: 2, Member: "b"}}, err)
	})
	call("pipeline", func() error {
		var incr *redis.IntCmd
		_, err := client.Pipelined(func(pipe *redis.Pipeline) error {
			pipe.Incr("p")
			incr = pipe.Incr("p")
			return nil
		})
		return expect(incr.Val(), int64(2), err)
	})
	call("multi/exec (TxPipelined)", func() error {
		var incr *redis.IntCmd
		_, err := client.TxPipelined(func(pipe *redis.Pipeline) error {
			pipe.Set("m", "1", 0)
			incr = pipe.Incr("m")
			return nil
		})
		return expect(incr.Val(), int64(2), err)
	})
	call("watch, then a transaction that commits", func() error {
		return client.Watch(func(tx *redis.Tx) error {
			n, err := tx.Get("n").Int64()
			if err != nil {
				return err
			}
			_, err = tx.Pipelined(func(pipe *redis.Pipeline) error {
				pipe.Set("n", n+1, 0)
				return nil
			})
			return err
		}, "n")
	})
	call("watch, a concurrent write aborts the transaction", func() error {
		err := client.Watch(func(tx *redis.Tx) error {
			if err := client.Set("w", "other", 0).Err(); err != nil {
				return err
			}
			_, err := tx.Pipelined(func(pipe *redis.Pipeline) error {
				pipe.Set("w", "mine", 0)
				return nil
			})
			return err
		}, "w")
		if err != redis.TxFailedErr {
			return fmt.Errorf("got %v, want redis.TxFailedErr", err)
		}
		got, err := client.Get("w").Result()
		return expect(got, "other", err)
	})
	const scriptSource = "return redis.call('incrby', KEYS[1], ARGV[1])"
	script := redis.NewScript(scriptSource)
	call("script run (EVALSHA, NOSCRIPT, EVAL)", func() error {
		got, err := script.Run(client, []string{"sc"}, 2).Result()
		return expect(got, int64(2), err)
	})
	call("script run again (EVALSHA hits the cache)", func() error {
		// Not script.Exists: v5's sends the source instead of the SHA1.
		exists, err := client.ScriptExists(fmt.Sprintf("%x", sha1.Sum([]byte(scriptSource)))).Result()
		if err != nil || !exists[0] {
			return fmt.Errorf("exists %v, %v", exists, err)
		}
		got, err := script.Run(client, []string{"sc"}, 3).Result()
		return expect(got, int64(5), err)
	})
	call("script flush, then run falls back to EVAL", func() error {
		if err := client.ScriptFlush().Err(); err != nil {
			return err
		}
		if _, err := script.EvalSha(client, []string{"sc"}, 1).Result(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return fmt.Errorf("EVALSHA after flush: %v", err)
		}
		got, err := script.Run(client, []string{"sc"}, 1).Result()
		return expect(got, int64(6), err)
	})
	call("script error is an error", func() error {
		_, err := client.Eval("return redis.call('incr', KEYS[1])", []string{"k"}).Result()
		if err == nil || !strings.Contains(err.Error(), "not an integer") {
			return fmt.Errorf("got %v", err)
		}
		return nil
	})
	call("info", func() error {
		info, err := client.Info("server").Result()
		if err == nil && !strings.Contains(info, "redis_version:") {
			return fmt.Errorf("no redis_version in %q", info)
		}
		return err
	})
	call("config get maxmemory", func() error {
		got, err := client.ConfigGet("maxmemory").Result()
		return expect(got, []interface{}{"maxmemory", "0"}, err)
	})
	call("scan iterates every key", func() error {
		for i := 0; i < 50; i++ {
			if err := client.Set(fmt.Sprintf("scan:%d", i), i, 0).Err(); err != nil {
				return err
			}
		}
		seen := map[string]bool{}
		iter := client.Scan(0, "scan:*", 7).Iterator()
		for iter.Next() {
			seen[iter.Val()] = true
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return expect(len(seen), 50, nil)
	})
	call("100 goroutines on one pool", func() error {
		var group sync.WaitGroup
		errs := make(chan error, 100)
		for i := 0; i < 100; i++ {
			group.Add(1)
			go func() {
				defer group.Done()
				if err := client.Incr("many").Err(); err != nil {
					errs <- err
				}
			}()
		}
		group.Wait()
		close(errs)
		for err := range errs {
			return err
		}
		got, err := client.Get("many").Int64()
		return expect(got, int64(100), err)
	})
	call("pexpire, pttl", func() error {
		if err := client.PExpire("k", 1500*time.Millisecond).Err(); err != nil {
			return err
		}
		ttl, err := client.PTTL("k").Result()
		if err == nil && (ttl <= 0 || ttl > 1500*time.Millisecond) {
			return fmt.Errorf("pttl %v", ttl)
		}
		return err
	})
	fmt.Printf("calls: passed %d of %d\n", passed, total)
	if passed != total {
		os.Exit(1)
	}
}
