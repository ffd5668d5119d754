//! Starts a real `kuma-global` process on free loopback ports and talks to it over HTTP.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{Instant, sleep};

/// A port free right now and never handed out before by this test process (the kernel may
/// give a just-released port again; two settings on one port fail the config check).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A running `kuma-global`; killed when dropped.
pub struct Global {
    pub child: Child,
    pub api: String,
    pub diagnostics: String,
    pub work_dir: PathBuf,
    log: PathBuf,
}

impl Global {
    /// `kuma-global ARGS` with a clean environment, `env` on top, and free ports.
    pub fn command(work_dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Command, u16, u16) {
        let api_port = free_port();
        let diag_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kuma-global"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", work_dir)
            .env("KUMA_GENERAL_WORK_DIR", work_dir)
            .env("KUMA_API_SERVER_HTTP_INTERFACE", "127.0.0.1")
            .env("KUMA_API_SERVER_HTTP_PORT", api_port.to_string())
            .env("KUMA_DIAGNOSTICS_SERVER_PORT", diag_port.to_string())
            .env("KUMA_LOG_LEVEL", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        (cmd, api_port, diag_port)
    }

    /// Starts `kuma-global run` with `env` on top of free ports and waits until `/ready`.
    pub async fn start(work_dir: &Path, env: &[(&str, String)]) -> Global {
        let (mut cmd, api_port, diag_port) = Global::command(work_dir, &["run"], env);
        let log = work_dir.join(format!("kuma-global-{api_port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let child = cmd.spawn().expect("spawn kuma-global");
        let mut global = Global {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
            diagnostics: format!("http://127.0.0.1:{diag_port}"),
            work_dir: work_dir.to_path_buf(),
            log,
        };
        global.wait_ready().await;
        global
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kuma-global exited with {status} before ready:\n{}",
                    self.logs()
                );
            }
            if let Ok(r) = client
                .get(format!("{}/ready", self.diagnostics))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kuma-global not ready within 60 s:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kuma-global did not stop on SIGTERM:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Global {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database on the server named by `DATABASE_URL`; fails the test when unset.
pub async fn fresh_database() -> (String, String) {
    use sqlx::Connection;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("set DATABASE_URL to a PostgreSQL superuser URL, or run `cargo xtask test`, which starts a throwaway PostgreSQL")
    });
    let name = format!("global_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create database");
    (url, name)
}

/// `KUMA_STORE_*` variables that point a control plane at database `name` on the server of `url`.
pub fn postgres_env(url: &str, name: &str) -> Vec<(&'static str, String)> {
    let parsed = reqwest::Url::parse(url).expect("DATABASE_URL is a URL");
    let mut env = vec![
        ("KUMA_STORE_TYPE", "postgres".to_string()),
        (
            "KUMA_STORE_POSTGRES_HOST",
            parsed.host_str().unwrap_or("127.0.0.1").to_string(),
        ),
        (
            "KUMA_STORE_POSTGRES_PORT",
            parsed.port().unwrap_or(5432).to_string(),
        ),
        ("KUMA_STORE_POSTGRES_USER", parsed.username().to_string()),
        ("KUMA_STORE_POSTGRES_DB_NAME", name.to_string()),
    ];
    if let Some(password) = parsed.password() {
        env.push(("KUMA_STORE_POSTGRES_PASSWORD", password.to_string()));
    }
    env
}

/// Runs `kuma-global ARGS` to completion; returns (success, stdout and stderr).
pub fn run_to_end(work_dir: &Path, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let (mut cmd, _, _) = Global::command(work_dir, args, env);
    let out = cmd.output().expect("run kuma-global");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
