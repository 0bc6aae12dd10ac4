//! A few thousand generated requests (seeded, reproducible: odd methods, paths, queries, headers and bodies,
//! a third of them plausible job submissions) get no 5xx from the API other than the documented 503, the
//! process lives on, and the jobs listed afterwards are exactly those created and not deleted.

use serde_json::json;

use osapi_tests::edge::raw_request;
use osapi_tests::{admin_token, sign, Cluster};

/// A tiny xorshift64* generator: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// `len` characters from `alphabet`.
    fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| *self.pick(alphabet) as char).collect()
    }
}

const SEGMENT_CHARS: &[u8] = b"abcXYZ019-_.~%:@!$&'()*+,;=";
const TEXT_CHARS: &[u8] = b"{}[]:,\"\\ 0123456789.eE+-truefalsnl\t\nxyz";

fn fuzz_path(rng: &mut Rng, known: &[String]) -> String {
    let id = if known.is_empty() || rng.chance(50) {
        uuid::Uuid::new_v4().to_string()
    } else {
        rng.pick(known).clone()
    };
    let base = match rng.below(16) {
        0 => "/job".to_string(),
        1 => "/job/status".to_string(),
        2 => "/job/workers".to_string(),
        3 => format!("/job/{id}"),
        4 => format!("/job/{id}/retry"),
        5 => "/health".to_string(),
        6 => "/health/ready".to_string(),
        7 => "/openapi.yaml".to_string(),
        8 => "/job/../job/./status".to_string(),
        9 => "/%2e%2e/%2e%2e/etc/passwd".to_string(),
        10 => format!("/job/{}", "a".repeat(1 + rng.below(4000))),
        11 => format!("/job/%{:02x}%ff%00%c0%af", rng.below(256)),
        12 => "//job//status/".to_string(),
        13 => {
            let depth = 1 + rng.below(6);
            (0..depth)
                .map(|_| {
                    let len = rng.below(12);
                    format!("/{}", rng.string(SEGMENT_CHARS, len))
                })
                .collect()
        }
        14 => format!("/job/{id}/retry/extra"),
        _ => "/".to_string(),
    };
    let query = match rng.below(10) {
        0 => format!(
            "?limit={}",
            rng.pick(&["0", "-1", "1e3", "99999999999999999999", "5", ""])
        ),
        1 => format!(
            "?status={}",
            rng.pick(&["pending", "failed", "x", "%00", "processing"])
        ),
        2 => format!("?offset={}&limit=2", rng.below(100)),
        // Only short or broken waits: a fuzz request must not hold a thread for long.
        3 => format!(
            "?wait={}",
            rng.pick(&["1ms", "50ms", "soon", "-1s", "%zz", "99999999999h"])
        ),
        4 => {
            let len = rng.below(200);
            format!("?{}", rng.string(SEGMENT_CHARS, len))
        }
        5 => "?&&&=&=".to_string(),
        _ => String::new(),
    };
    base + &query
}

fn fuzz_body(rng: &mut Rng) -> Option<String> {
    match rng.below(12) {
        0 => None,
        1 => Some(String::new()),
        2 => {
            let len = rng.below(300);
            Some(rng.string(TEXT_CHARS, len))
        }
        3 => Some("[".repeat(10_000)),
        4 => Some(format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200))),
        5 => Some(format!(
            "{{\"timeout\": 1{}}}",
            "0".repeat(1 + rng.below(5000))
        )),
        6 => Some(r#"{"operation": 5, "target_hostname": ["_any"], "timeout": {}}"#.to_string()),
        7 => Some("null".to_string()),
        _ => fuzz_job(rng),
    }
}

/// A job body, mostly valid, with random operations, targets, timeouts and the odd unknown field.
fn fuzz_job(rng: &mut Rng) -> Option<String> {
    let types = [
        "test.ping.do",
        "test.echo.do",
        "test.sleep.do",
        "system.hostname.get",
        "nope.x.y",
        "",
    ];
    let targets = [
        "_any",
        "_all",
        "group:web",
        "web1",
        "bad host",
        "group:",
        ":",
        "_none",
        "a..b",
    ];
    let mut job = json!({
        "operation": {"type": rng.pick(&types), "data": {"seconds": 0, "n": rng.next() % 1000}},
        "target_hostname": rng.pick(&targets),
    });
    if rng.chance(30) {
        job["timeout"] = json!(rng.pick(&["1s", "0s", "2d", "x", "90s"]));
    }
    if rng.chance(10) {
        job[rng.string(b"abcdef", 5)] = json!(rng.next());
    }
    if rng.chance(10) {
        job["operation"]["data"] = json!(rng.pick(&["str", "1"]));
    }
    Some(job.to_string())
}

fn fuzz_headers(rng: &mut Rng, admin: &str, wrong_key: &str) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let auth = match rng.below(10) {
        0 => None,
        1 => Some("Bearer garbage".to_string()),
        2 => Some(format!("Bearer {wrong_key}")),
        3 => Some(format!("Basic {}", rng.string(b"abcdef=", 20))),
        4 => Some(format!("Bearer {}", "A".repeat(1000 + rng.below(3000)))),
        _ => Some(format!("Bearer {admin}")),
    };
    if let Some(auth) = auth {
        headers.push(("Authorization".to_string(), auth));
    }
    if rng.chance(20) {
        headers.push(("X-Junk".to_string(), "j".repeat(1 + rng.below(4000))));
    }
    if rng.chance(20) {
        let content_type = rng.pick(&[
            "text/plain",
            "application/xml",
            "",
            "application/json; charset=latin1",
        ]);
        headers.push(("Content-Type".to_string(), content_type.to_string()));
    } else {
        headers.push(("Content-Type".to_string(), "application/json".to_string()));
    }
    headers
}

#[test]
fn thousands_of_generated_odd_requests_get_no_5xx_and_no_crash() {
    const REQUESTS: usize = 3000;
    const THREADS: usize = 4;
    const SEED: u64 = 0x05A9_1F00_D5EE_D001;
    let mut cluster = Cluster::start(&[]);
    let admin = admin_token();
    let wrong_key = sign(
        &osapi_tests::claims(&["admin"], None),
        "some-other-signing-key-of-32-bytes-or-more",
    );
    let methods: [&[u8]; 9] = [
        b"GET", b"POST", b"DELETE", b"PUT", b"PATCH", b"HEAD", b"OPTIONS", b"FOO", b"GET",
    ];

    let results: Vec<(Vec<String>, usize, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (cluster, admin, wrong_key) = (&cluster, &admin, &wrong_key);
                scope.spawn(move || {
                    let mut rng = Rng(SEED ^ ((thread as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                    let mut known: Vec<String> = Vec::new();
                    let (mut failures, mut created, mut deleted) = (Vec::new(), 0, 0);
                    for n in 0..REQUESTS / THREADS {
                        // A third are job submissions as a client would send them (odd fields and all),
                        // so the API also stores jobs under the barrage; the rest is anything.
                        let submission = rng.chance(33);
                        let method = if submission { &b"POST"[..] } else { *rng.pick(&methods) };
                        let path = if submission { "/job".to_string() } else { fuzz_path(&mut rng, &known) };
                        let headers = if submission {
                            vec![("Authorization".to_string(), format!("Bearer {admin}"))]
                        } else {
                            fuzz_headers(&mut rng, admin, wrong_key)
                        };
                        let body = if submission { fuzz_job(&mut rng) } else { fuzz_body(&mut rng) };
                        let body = body.unwrap_or_default();
                        let (status, text) = raw_request(cluster, method, path.as_bytes(), &headers, body.as_bytes());
                        let method = String::from_utf8_lossy(method);
                        let shown: String = body.chars().take(120).collect();
                        match status {
                            None => {
                                failures.push(format!("#{thread}.{n} {method} {path} body {shown:?}: no answer ({text:?})"));
                            }
                            Some(code) if code >= 500 && code != 503 => {
                                let head: String = text.chars().take(300).collect();
                                failures.push(format!("#{thread}.{n} {method} {path} body {shown:?}: {head}"));
                            }
                            Some(201) => {
                                created += 1;
                                if let Some(id) = text.split("\"job_id\":\"").nth(1).and_then(|s| s.get(..36)) {
                                    known.push(id.to_string());
                                }
                            }
                            Some(204) => deleted += 1,
                            Some(_) => {}
                        }
                    }
                    (failures, created, deleted)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("fuzz thread"))
            .collect()
    });

    let failures: Vec<&String> = results.iter().flat_map(|(f, _, _)| f).collect();
    let created: usize = results.iter().map(|(_, c, _)| c).sum();
    let deleted: usize = results.iter().map(|(_, _, d)| d).sum();
    eprintln!(
        "{REQUESTS} generated requests, {created} jobs created, {deleted} deleted, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} bad answers, first ones:\n{:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert!(created > 0, "the generator also sends valid jobs");
    assert!(
        cluster.api.exited().is_none(),
        "osapi-api is alive:\n{}",
        cluster.api.log_tail()
    );
    let health = cluster.http("GET", "/health", None);
    assert_eq!(health.status, 200, "{}", health.text);
    let listed = cluster.http("GET", "/job?limit=1000", None);
    assert_eq!(
        listed.body["total_items"].as_u64(),
        Some((created - deleted) as u64),
        "every job created (201) and not deleted (204) is listed"
    );
}
