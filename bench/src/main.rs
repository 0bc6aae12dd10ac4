//! `osapi-bench NATS_URL API_URL [JOBS]`: sequential job round trips, two ways, in one run:
//! 1. the raw floor: the NATS operations one job needs, issued through `osapi-bus` with no HTTP
//!    (put job, publish, pull, get job, put state, put response, put state, ack, get response);
//! 2. through HTTP: `POST /job` + `GET /job/{id}?wait=5s` for `system.hostname.get` against a running
//!    API and worker, with the token in `$OSAPI_TOKEN`.
//!
//! Prints p50/p99 of each and their ratio. Timings on a shared machine are noisy: compare the ratio.

use osapi_bus::{Bus, ConnectOptions, ConsumerConfig, StreamConfig};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: osapi-bench NATS_URL API_URL [JOBS]");
        std::process::exit(2);
    }
    let jobs: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(300);
    let floor = match raw_floor(&args[1], jobs) {
        Ok(f) => f,
        Err(e) => fail(&format!("raw floor: {e}")),
    };
    let http = match http_round_trip(&args[2], jobs) {
        Ok(h) => h,
        Err(e) => fail(&format!("http round trip: {e}")),
    };
    let (f50, f99) = (pct(&floor, 50), pct(&floor, 99));
    let (h50, h99) = (pct(&http, 50), pct(&http, 99));
    println!(
        "{:<34} {:>10} {:>10}",
        "sequential, per job", "p50 ms", "p99 ms"
    );
    println!(
        "{:<34} {:>10.3} {:>10.3}",
        "raw NATS floor (osapi-bus)", f50, f99
    );
    println!(
        "{:<34} {:>10.3} {:>10.3}",
        "HTTP create + wait (hostname.get)", h50, h99
    );
    println!(
        "{:<34} {:>10.2} {:>10.2}",
        "ratio HTTP / floor",
        h50 / f50,
        h99 / f99
    );
    println!(
        "{{\"jobs\":{jobs},\"floor_p50_ms\":{f50:.3},\"floor_p99_ms\":{f99:.3},\"http_p50_ms\":{h50:.3},\"http_p99_ms\":{h99:.3},\"ratio_p50\":{:.3}}}",
        h50 / f50
    );
}

fn fail(msg: &str) -> ! {
    eprintln!("osapi-bench: {msg}");
    std::process::exit(1);
}

fn pct(samples: &[f64], p: usize) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len().saturating_sub(1)) * p) / 100;
    s.get(i).copied().unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn raw_floor(url: &str, jobs: usize) -> Result<Vec<f64>, String> {
    let opts = |name: &str| ConnectOptions {
        url: url.to_string(),
        user_pass: None,
        token: None,
        request_timeout: Duration::from_secs(2),
        name: name.into(),
    };
    let client = Bus::connect(&opts("bench-client")).map_err(|e| e.to_string())?;
    let worker = Bus::connect(&opts("bench-worker")).map_err(|e| e.to_string())?;
    let ns = format!("bench{}", std::process::id());
    let names = osapi_common::names::Names::new(&ns, "JOBS", "jq", "jr", "w");
    let cfg = StreamConfig {
        max_age: Duration::from_secs(600),
        max_msgs: -1,
        max_bytes: -1,
        storage: "file".into(),
        replicas: 1,
        discard: "old".into(),
    };
    let e = |e: osapi_bus::BusError| e.to_string();
    client
        .stream_ensure(&names.stream, &[names.stream_subjects()], &cfg)
        .map_err(e)?;
    client.kv_ensure(&names.bucket, &cfg).map_err(e)?;
    client.kv_ensure(&names.response_bucket, &cfg).map_err(e)?;
    let spec = &names.worker_consumers("bench", &Default::default())[0];
    worker
        .consumer_ensure(
            &names.stream,
            &ConsumerConfig {
                durable: spec.durable.clone(),
                filter: spec.filter.clone(),
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
                back_off: vec![],
                max_ack_pending: 1000,
            },
        )
        .map_err(e)?;
    let puller = worker.puller(&names.stream, &spec.durable).map_err(e)?;
    let subject = names.job_subject(
        osapi_common::operation::Kind::Query,
        &osapi_common::target::Target::Any,
    );
    let job = br#"{"id":"x","operation":{"type":"system.hostname.get","data":{}},"target_hostname":"_any","created":"","created_us":0,"timeout_ms":60000}"#;
    let state = vec![b'x'; 400];
    let mut out = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let id = uuid::Uuid::new_v4().to_string();
        let t = Instant::now();
        client
            .kv_create(&names.bucket, &format!("jobs.{id}"), job)
            .map_err(e)?;
        client.js_publish(&subject, &id, id.as_bytes()).map_err(e)?;
        let msg = puller
            .next(Duration::from_secs(5))
            .map_err(e)?
            .ok_or("no message")?;
        worker
            .kv_get(&names.bucket, &format!("jobs.{id}"))
            .map_err(e)?;
        worker
            .kv_put(&names.bucket, &format!("state.{id}.bench"), &state)
            .map_err(e)?;
        worker
            .kv_put(
                &names.response_bucket,
                &format!("{id}.bench"),
                b"{\"hostname\":\"bench\"}",
            )
            .map_err(e)?;
        worker
            .kv_put(&names.bucket, &format!("state.{id}.bench"), &state)
            .map_err(e)?;
        msg.ack().map_err(e)?;
        client
            .kv_get(&names.response_bucket, &format!("{id}.bench"))
            .map_err(e)?;
        out.push(ms(t.elapsed()));
    }
    Ok(out)
}

fn http_round_trip(api: &str, jobs: usize) -> Result<Vec<f64>, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let auth = format!(
        "Bearer {}",
        std::env::var("OSAPI_TOKEN").unwrap_or_default()
    );
    // The worker must be listed before the first job, or `_any` waits for it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let workers: serde_json::Value = agent
            .get(&format!("{api}/job/workers"))
            .set("Authorization", &auth)
            .call()
            .map_err(|e| e.to_string())?
            .into_json()
            .map_err(|e| e.to_string())?;
        if workers["total"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err("no worker listed after 15 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = serde_json::json!({"operation": {"type": "system.hostname.get", "data": {}}, "target_hostname": "_any"});
    let mut out = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t = Instant::now();
        let created: serde_json::Value = agent
            .post(&format!("{api}/job"))
            .set("Authorization", &auth)
            .send_json(body.clone())
            .map_err(|e| e.to_string())?
            .into_json()
            .map_err(|e| e.to_string())?;
        let id = created["job_id"].as_str().ok_or("no job_id")?;
        let done: serde_json::Value = agent
            .get(&format!("{api}/job/{id}?wait=5s"))
            .set("Authorization", &auth)
            .call()
            .map_err(|e| e.to_string())?
            .into_json()
            .map_err(|e| e.to_string())?;
        if done["status"] != "completed" {
            return Err(format!("job {id} ended {}", done["status"]));
        }
        out.push(ms(t.elapsed()));
    }
    Ok(out)
}
