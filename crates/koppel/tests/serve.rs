//! `koppel serve`: the demo organisation applied into the built-in directory, then read
//! back through the SCIM endpoint by filter, with and without the bearer token.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `koppel` in `dir`, with the SCIM endpoint's bearer token.
fn koppel(dir: &Path) -> Command {
    let mut c = common::koppel(dir);
    c.env("KOPPEL_SCIM_TOKEN", "serve-test-token");
    c
}

/// One HTTP/1.1 request; the status code and the body.
fn get(port: u16, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_answers_scim_filters_over_the_applied_directory() {
    let ws = common::demo_workspace();
    let dir = ws.path();
    common::ok(dir, &["apply", "--now", "2026-11-23"]);
    let state = common::json(dir, &["state", "--output", "json"]);
    let username = state["targets"]["directory"]["accounts"]["1000903"]["attributes"]["username"]
        .as_str()
        .unwrap()
        .to_owned();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        koppel(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while get(port, "/healthz", None).map(|(s, _)| s).ok() != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "koppel serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let query = format!(
        "/Users?filter=userName%20eq%20%22{}%22",
        username.to_uppercase()
    );
    let (status, body) = get(port, &query, Some("serve-test-token")).unwrap();
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list["totalResults"], 1,
        "userName is case-insensitive: {body}"
    );
    let user = &list["Resources"][0];
    assert_eq!(user["userName"], username.as_str());
    assert_eq!(user["name"]["familyName"], "O'Brien");
    assert_eq!(
        user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
        "1000903"
    );

    let (status, _) = get(port, &query, None).unwrap();
    assert_eq!(status, 401, "no token, no answer");
    let (status, _) = get(port, &query, Some("wrong-token")).unwrap();
    assert_eq!(status, 401);
}
