//! A dataplane as an operator runs it: `kuma-dp run` ([`KumaDp`]) with an inline Dataplane
//! file and a dataplane token from `kumactl generate dataplane-token`, supervising a real Envoy
//! (`ENVOY_BINARY`). Dropping a [`Sidecar`] kills kuma-dp and its Envoy, also when the test
//! panics (after printing kuma-dp's log).

use std::path::PathBuf;
use std::time::Duration;

use super::dp::KumaDp;
pub use super::dp::envoy_binary;
use super::{Federation, eventually, free_port};

/// One `kuma-dp run` and its Envoy.
pub struct Sidecar {
    pub name: String,
    /// Envoy's admin port.
    pub admin_port: u16,
    pub dir: PathBuf,
    dp: KumaDp,
}

impl Sidecar {
    /// Starts `kuma-dp run` for the Dataplane `yaml` (kumactl YAML with `mesh` and `name`)
    /// against the zone control plane `zone` of `federation`, with a fresh dataplane token.
    pub fn start(
        federation: &Federation,
        zone: &str,
        name: &str,
        mesh: &str,
        yaml: &str,
    ) -> Sidecar {
        let token = federation
            .kumactl(
                zone,
                &[
                    "generate",
                    "dataplane-token",
                    "--name",
                    name,
                    "--mesh",
                    mesh,
                    "--valid-for",
                    "1h",
                ],
            )
            .ok()
            .trim()
            .to_string();
        Sidecar::start_with_token(federation, zone, name, mesh, yaml, &token)
    }

    /// [`Sidecar::start`] with the given token text.
    pub fn start_with_token(
        federation: &Federation,
        zone: &str,
        name: &str,
        mesh: &str,
        yaml: &str,
        token: &str,
    ) -> Sidecar {
        Sidecar::launch(federation, zone, name, &["--mesh", mesh], yaml, token)
    }

    /// `kuma-dp run --proxy-type ingress` for the ZoneIngress `yaml` against zone `zone`,
    /// with `token` (a zone token of scope `ingress`).
    pub fn start_ingress(
        federation: &Federation,
        zone: &str,
        name: &str,
        yaml: &str,
        token: &str,
    ) -> Sidecar {
        Sidecar::launch(
            federation,
            zone,
            name,
            &["--proxy-type", "ingress"],
            yaml,
            token,
        )
    }

    fn launch(
        federation: &Federation,
        zone: &str,
        name: &str,
        kind_args: &[&str],
        yaml: &str,
        token: &str,
    ) -> Sidecar {
        let dir = federation.dir().join("sidecars").join(name);
        std::fs::create_dir_all(&dir).expect("sidecar dir");
        let token_file = dir.join("token");
        std::fs::write(&token_file, token).expect("write the token");
        let dataplane_file = dir.join("dataplane.yaml");
        std::fs::write(&dataplane_file, yaml).expect("write the dataplane");
        let admin_port = free_port();
        let cp = format!("http://127.0.0.1:{}", federation.bootstrap_port(zone));
        let (token_file, dataplane_file, work) = (
            path_str(&token_file),
            path_str(&dataplane_file),
            path_str(&dir.join("work")),
        );
        let admin = admin_port.to_string();
        let envoy = envoy_binary();
        let mut args = vec!["run", "--cp-address", &cp, "--name", name];
        args.extend_from_slice(kind_args);
        args.extend_from_slice(&[
            "--dataplane-token-file",
            &token_file,
            "--dataplane-file",
            &dataplane_file,
            "--admin-port",
            &admin,
            "--binary-path",
            &envoy,
            "--work-dir",
            &work,
            "--drain-time",
            "1s",
        ]);
        let dp = KumaDp::start(&dir, &args, &[]);
        Sidecar {
            name: name.to_string(),
            admin_port,
            dir,
            dp,
        }
    }

    pub fn logs(&self) -> String {
        self.dp.logs()
    }

    /// GET `path` on Envoy's admin port: the body, or why not.
    pub async fn admin(&self, path: &str) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let response = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        response.text().await.map_err(|e| format!("GET {url}: {e}"))
    }

    /// Waits until Envoy's admin says every listener and cluster is warmed (`/ready` is LIVE).
    pub async fn wait_live(&self) {
        eventually(
            Duration::from_secs(60),
            &format!("Envoy of {} LIVE", self.name),
            async || match self.admin("/ready").await {
                Ok(text) if text.trim() == "LIVE" => Ok(()),
                Ok(text) => Err(text),
                Err(e) => Err(format!("{e}\n--- kuma-dp log\n{}", self.logs())),
            },
        )
        .await;
    }

    /// Waits until kuma-dp exits by itself (it is not killed); fails after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.dp.wait_exit(deadline).await
    }
}

fn path_str(path: &std::path::Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}
