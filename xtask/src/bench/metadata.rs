//! `cargo xtask bench metadata`: requests to the metadata service.

use super::*;

/// One keep-alive HTTP/1.1 exchange on `stream`; returns the status code.
fn http_exchange(
    stream: &mut std::net::TcpStream,
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    request: &[u8],
) -> Result<u16> {
    use std::io::{BufRead, Read, Write};
    stream.write_all(request)?;
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(code)
}

/// `cargo xtask bench metadata [--quick]`: requests/s of the metadata
/// service (GET pod/uuid and POST pod/hmac/sign) from several concurrent
/// keep-alive clients on 127.0.0.1, for a registered host-network pod.
pub fn metadata(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    use std::io::BufRead;
    let work = PathBuf::from(WORK).join("metadata");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut service = Command::new(skiff)
        .arg("--dir")
        .arg(work.join("data"))
        .args([
            "metadata-service",
            "--listen-port=0",
            "--listen-address=127.0.0.1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = service.stderr.take().context("no service stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let port: u16 = loop {
        let line = lines.next().context("the metadata service exited")??;
        if let Some(p) = line.split("port=").nth(1) {
            break p.split_whitespace().next().unwrap_or("").parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let result = (|| -> Result<()> {
        let uuid = "0a6f4d5e-1c2b-4a39-8e7f-123456789abc";
        let (token, _) = skiff_metadata::protocol::register(
            &work.join("data"),
            skiff_metadata::protocol::Registration {
                uuid: uuid.into(),
                manifest: r#"{"acVersion":"0.8.11","acKind":"PodManifest","apps":[]}"#.into(),
                apps: vec![],
                ip: None,
                forwarded: false,
                mapped_peer: false,
            },
        )?;
        let clients = 8;
        let per_client = if quick { 500 } else { 2500 };
        println!(
            "\nbench metadata: {clients} keep-alive clients x {per_client} requests each, 127.0.0.1:{port}"
        );
        println!("\n| request | requests | seconds | requests/s | errors |\n|---|---|---|---|---|");
        let mut json = Vec::new();
        for (name, request) in [
            (
                "GET pod/uuid",
                format!(
                    "GET /{token}/acMetadata/v1/pod/uuid HTTP/1.1\r\nHost: mds\r\nMetadata-Flavor: AppContainer\r\n\r\n"
                ),
            ),
            (
                "POST pod/hmac/sign",
                format!(
                    "POST /{token}/acMetadata/v1/pod/hmac/sign HTTP/1.1\r\nHost: mds\r\nMetadata-Flavor: AppContainer\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\ncontent=hello"
                ),
            ),
        ] {
            let start = Instant::now();
            let threads: Vec<_> = (0..clients)
                .map(|_| {
                    let request = request.clone();
                    std::thread::spawn(move || -> Result<usize> {
                        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
                        stream.set_nodelay(true)?;
                        let mut reader = std::io::BufReader::new(stream.try_clone()?);
                        let mut errors = 0;
                        for _ in 0..per_client {
                            if http_exchange(&mut stream, &mut reader, request.as_bytes())? != 200 {
                                errors += 1;
                            }
                        }
                        Ok(errors)
                    })
                })
                .collect();
            let mut errors = 0;
            for t in threads {
                errors += t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
            }
            let secs = start.elapsed().as_secs_f64();
            let total = clients * per_client;
            let rate = total as f64 / secs;
            println!("| {name} | {total} | {secs:.2} | {rate:.0} | {errors} |");
            json.push(format!(
                "{{\"request\":{name:?},\"requests\":{total},\"seconds\":{secs:.3},\"per_second\":{rate:.0},\"errors\":{errors}}}"
            ));
            if errors > 0 {
                bail!("{errors} requests failed");
            }
        }
        json.push(load(port, &token, quick)?);
        let written = write_result(root, "metadata.json", format!("[{}]\n", json.join(",")))?;
        println!("wrote {}", written.display());
        Ok(())
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status();
    let _ = service.wait();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// 1,000 connections open at once (from 10 loopback addresses, 100 each:
/// one address may hold 128), each sending keep-alive GETs, while 128
/// slowloris connections from another address trickle a request they
/// never finish: requests/s and latency percentiles. The JSON object.
fn load(port: u16, token: &str, quick: bool) -> Result<String> {
    use std::io::Write;
    let connections = 1000;
    let per_connection = if quick { 5 } else { 50 };
    let connect_from = |last: u8| -> Result<std::net::TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let from = std::net::SocketAddr::from(([127, 0, 0, last], 0));
        socket.bind(&from.into())?;
        socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        Ok(socket.into())
    };
    let mut slow = Vec::new();
    for _ in 0..128 {
        let mut s = connect_from(250)?;
        s.write_all(b"GET /x/acMetadata/v1/pod/uuid HTTP/1.1\r\nHost: a\r\n")?;
        slow.push(s);
    }
    let request = format!(
        "GET /{token}/acMetadata/v1/pod/uuid HTTP/1.1\r\nHost: mds\r\nMetadata-Flavor: AppContainer\r\n\r\n"
    );
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(connections + 1));
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let (request, barrier) = (request.clone(), barrier.clone());
            let stream = connect_from(10 + (i % 10) as u8);
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || -> Result<(Vec<Duration>, usize)> {
                    let mut stream = stream?;
                    stream.set_nodelay(true)?;
                    let mut reader = std::io::BufReader::new(stream.try_clone()?);
                    barrier.wait();
                    let mut times = Vec::with_capacity(per_connection);
                    let mut errors = 0;
                    for _ in 0..per_connection {
                        let started = Instant::now();
                        match http_exchange(&mut stream, &mut reader, request.as_bytes()) {
                            Ok(200) => times.push(started.elapsed()),
                            _ => errors += 1,
                        }
                    }
                    Ok((times, errors))
                })
                .map_err(anyhow::Error::from)
        })
        .collect::<Result<_>>()?;
    barrier.wait();
    let start = Instant::now();
    let mut times = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (t, e) = t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        times.extend(t);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(slow);
    times.sort();
    let at =
        |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let (p50, p99) = (ms(at(0.50)), ms(at(0.99)));
    let rate = times.len() as f64 / secs;
    println!(
        "\n{connections} connections at once x {per_connection} keep-alive GET pod/uuid, 128 slowloris connections open:\n\n\
         | requests | seconds | requests/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n\
         | {} | {secs:.2} | {rate:.0} | {p50:.1} | {p99:.1} | {errors} |",
        times.len()
    );
    if errors > 0 {
        bail!("{errors} requests of the 1,000-connection load failed");
    }
    Ok(format!(
        "{{\"request\":\"GET pod/uuid, {connections} connections\",\"requests\":{},\"seconds\":{secs:.3},\"per_second\":{rate:.0},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2},\"errors\":{errors}}}",
        times.len()
    ))
}
