//! A real headless Chromium (Debian's `chromium`) driven over WebDriver by Debian's
//! `chromedriver`, through fantoccini. [`Browser::start`] runs chromedriver on a free loopback
//! port in its own process group; dropping the [`Browser`] kills that group (chromedriver and
//! every Chromium it started), also when the test panics.
//!
//! `CHROMEDRIVER` and `CHROMIUM_BINARY` override where the two programs are looked for
//! (default: `chromedriver` / `chromium` on `PATH`, then `/usr/bin`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{eventually, free_port};

/// A program from `var`, else from `PATH`, else `/usr/bin/<names>`.
fn program(var: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found: install Debian's chromium and chromium-driver (.ci/run does), or set {var}",
        names.join(" / ")
    );
}

/// A headless Chromium session; screenshots go to `shots`.
pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and opens a session of a headless Chromium, 1400x1000.
    pub async fn start(shots: &Path) -> Browser {
        std::fs::create_dir_all(shots).expect("screenshot dir");
        let driver_bin = program("CHROMEDRIVER", &["chromedriver"]);
        let chromium = program("CHROMIUM_BINARY", &["chromium", "chromium-browser"]);
        let port = free_port();
        let log = std::fs::File::create(shots.join("chromedriver.log")).expect("driver log");
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_bin.display()));
        let mut browser_guard = DriverGuard(Some(driver));
        let http = reqwest::Client::new();
        let status = format!("http://127.0.0.1:{port}/status");
        eventually(Duration::from_secs(30), "chromedriver ready", async || {
            let body: Value = http
                .get(&status)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if body.pointer("/value/ready") == Some(&Value::Bool(true)) {
                Ok(())
            } else {
                Err(body.to_string())
            }
        })
        .await;
        let profile = shots.join("profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a Chromium session ({}): {e}\nchromedriver log:\n{}",
                    chromium.display(),
                    std::fs::read_to_string(shots.join("chromedriver.log")).unwrap_or_default()
                )
            });
        Browser {
            client,
            driver: browser_guard.0.take().expect("driver"),
            shots: shots.to_path_buf(),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The value of `attribute` on the first element matching `css`, `None` when there is
    /// no such element or attribute.
    pub async fn attr(&self, css: &str, attribute: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(attribute).await.ok().flatten()
    }

    /// Whether the page has an element matching `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Runs `script` in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Clicks the first element matching `css`. Live pages swap their `<main>` as the store
    /// changes, so an element found a moment ago may be gone: find and click again until it
    /// works or 10 s pass.
    pub async fn click(&self, css: &str) {
        eventually(
            Duration::from_secs(10),
            &format!("clicking {css}"),
            async || {
                let element = self
                    .client
                    .find(Locator::Css(css))
                    .await
                    .map_err(|e| format!("not found: {e}"))?;
                element.click().await.map_err(|e| e.to_string())
            },
        )
        .await;
    }

    /// Saves a PNG of the viewport as `<shots>/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing a screenshot");
        path
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Kills chromedriver's process group when dropped.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            kill_group(child);
        }
    }
}

fn kill_group(child: &mut Child) {
    // The group id is the driver's pid (process_group(0)); Chromium runs in it too.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}
