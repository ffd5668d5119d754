//! The docker harness of `tests/containers.rs`: containers of the images `cargo xtask images`
//! builds (`kuma-rs/*`), started with testcontainers on networks and volumes this harness
//! creates, under names unique to the run (`kuma-e2e-<random>-...`), so that runs from several
//! checkouts can share one Docker daemon.
//!
//! Cleanup: dropping the [`DockerLab`] removes its containers (newest first, with their
//! anonymous volumes), then its networks and named volumes, also when the test panics (after
//! printing the tail of every container's log). Everything it creates carries the label
//! `io.kuma-rs.e2e=containers`: a run that was itself killed leaves things that
//! `docker ps -a --filter label=io.kuma-rs.e2e=containers` (and `docker network ls` /
//! `docker volume ls` with the same filter) find.
//!
//! The host reaches the containers on their IP addresses on the bridge networks (Linux);
//! nothing is published on a host port.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{
    EndpointSettings, HealthStatusEnum, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, VolumeCreateRequest,
};
use testcontainers::bollard::query_parameters::LogsOptionsBuilder;
use testcontainers::core::ExecCommand;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};
use tokio_stream::StreamExt;

use super::eventually;

/// The label on every container, network and volume of a [`DockerLab`].
const LABEL: (&str, &str) = ("io.kuma-rs.e2e", "containers");

/// Lines of each container's log printed when a test fails.
const LOG_TAIL_LINES: &str = "80";

/// Set (to anything but empty) when a missing Docker or missing images must fail the test
/// instead of skipping it (`.ci/run` sets it after `cargo xtask images`).
pub const REQUIRE_DOCKER: &str = "KUMA_E2E_REQUIRE_DOCKER";

/// The tag of the `kuma-rs/*` images: `KUMA_RS_TAG` (as for compose/), `latest` by default.
pub fn image_tag() -> String {
    std::env::var("KUMA_RS_TAG")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "latest".into())
}

/// The Docker daemon when it answers and holds `kuma-rs/<image>:<tag>` for every image;
/// otherwise `None` after printing why the test is skipped, or a panic when
/// [`REQUIRE_DOCKER`] is set.
pub async fn docker_or_skip(images: &[&str]) -> Option<Docker> {
    let tag = image_tag();
    let missing = match available(images, &tag).await {
        Ok(docker) => return Some(docker),
        Err(why) => why,
    };
    let require = std::env::var_os(REQUIRE_DOCKER).is_some_and(|v| !v.is_empty());
    assert!(
        !require,
        "{missing} ({REQUIRE_DOCKER} is set, so this fails instead of skipping; build the images with `cargo xtask images`)"
    );
    eprintln!(
        "SKIPPED: {missing}. This test needs Docker and the images of `cargo xtask images`; set {REQUIRE_DOCKER}=1 to fail instead of skipping."
    );
    None
}

async fn available(images: &[&str], tag: &str) -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("no Docker client (DOCKER_HOST or the local socket): {e}"))?;
    tokio::time::timeout(Duration::from_secs(10), docker.ping())
        .await
        .map_err(|_| "Docker does not answer within 10s".to_string())?
        .map_err(|e| format!("Docker is not reachable: {e}"))?;
    let mut missing = Vec::new();
    for image in images {
        let name = format!("kuma-rs/{image}:{tag}");
        if docker.inspect_image(&name).await.is_err() {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        Ok(docker)
    } else {
        Err(format!("missing images: {}", missing.join(", ")))
    }
}

/// Runs `test`; when the process gets SIGTERM (nextest's timeout) or SIGINT (Ctrl-C) first,
/// drops `test` (and with it every [`DockerLab`] it holds, which removes its containers) and
/// fails. Without this a killed test run leaves its containers running.
pub async fn removed_on_termination(test: impl Future<Output = ()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    let which = tokio::select! {
        () = test => return,
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    panic!("{which}: the test was stopped and its containers removed");
}

/// Containers, networks and volumes of one test, removed on drop. Needs tokio's
/// multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`): its `Drop` blocks on
/// Docker as testcontainers' does.
pub struct DockerLab {
    docker: Docker,
    prefix: String,
    tag: String,
    /// In start order; removed newest first.
    containers: Vec<(String, ContainerAsync<GenericImage>)>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

impl DockerLab {
    pub fn new(docker: Docker) -> DockerLab {
        let id = uuid::Uuid::new_v4().simple().to_string();
        DockerLab {
            docker,
            prefix: format!("kuma-e2e-{}", &id[..8]),
            tag: image_tag(),
            containers: Vec::new(),
            networks: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn labels() -> HashMap<String, String> {
        HashMap::from([(LABEL.0.to_string(), LABEL.1.to_string())])
    }

    /// Creates the bridge network `<prefix>-<name>`; returns its name.
    pub async fn network(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        let request = NetworkCreateRequest {
            name: full.clone(),
            driver: Some("bridge".into()),
            labels: Some(Self::labels()),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .unwrap_or_else(|e| panic!("creating network {full}: {e}"));
        self.networks.push(full.clone());
        full
    }

    /// Creates the volume `<prefix>-<name>`; returns its name.
    pub async fn volume(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        let request = VolumeCreateRequest {
            name: Some(full.clone()),
            labels: Some(Self::labels()),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .unwrap_or_else(|e| panic!("creating volume {full}: {e}"));
        self.volumes.push(full.clone());
        full
    }

    /// The image `kuma-rs/<name>` at this run's tag.
    pub fn image(&self, name: &str) -> GenericImage {
        GenericImage::new(format!("kuma-rs/{name}"), self.tag.clone())
    }

    /// Starts `request` as the container `<prefix>-<name>`, kept until the lab is dropped.
    /// Readiness is the caller's business ([`DockerLab::wait_healthy`]), so that a container
    /// that never gets ready is still there for its log.
    pub async fn start(&mut self, name: &str, request: ContainerRequest<GenericImage>) {
        let container = self.create(name, request).await;
        self.containers.push((name.to_string(), container));
    }

    async fn create(
        &self,
        name: &str,
        request: ContainerRequest<GenericImage>,
    ) -> ContainerAsync<GenericImage> {
        request
            .with_container_name(format!("{}-{name}", self.prefix))
            .with_label(LABEL.0, LABEL.1)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting container {name}: {e}"))
    }

    /// Runs `request` as the one-off container `<prefix>-<name>` until it exits (within
    /// `deadline`); fails unless it exits with 0. Returns its output (stdout and stderr).
    pub async fn run(
        &self,
        name: &str,
        request: ContainerRequest<GenericImage>,
        deadline: Duration,
    ) -> String {
        let container = self.create(name, request).await;
        let id = container.id().to_string();
        let docker = &self.docker;
        let code = eventually(deadline, &format!("{name} exits"), async || {
            let state = docker
                .inspect_container(&id, None)
                .await
                .map_err(|e| e.to_string())?
                .state
                .unwrap_or_default();
            match (state.running, state.exit_code) {
                (Some(false), Some(code)) => Ok(code),
                _ => Err(format!("still running: {:?}", state.status)),
            }
        })
        .await;
        let output = self.logs(&id, None).await;
        assert_eq!(code, 0, "{name} exited with {code}:\n{output}");
        output
    }

    fn container(&self, name: &str) -> &ContainerAsync<GenericImage> {
        self.containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .unwrap_or_else(|| panic!("no container {name} in this lab"))
    }

    /// The docker id of container `name`.
    pub fn id(&self, name: &str) -> String {
        self.container(name).id().to_string()
    }

    /// The address of container `name` on `network` (`None` when not attached to it).
    pub async fn ip(&self, name: &str, network: &str) -> Option<IpAddr> {
        let inspect = self
            .docker
            .inspect_container(&self.id(name), None)
            .await
            .ok()?;
        inspect
            .network_settings?
            .networks?
            .get(network)?
            .ip_address
            .as_deref()?
            .parse()
            .ok()
    }

    /// Waits until docker reports container `name` healthy (its image's health check);
    /// fails at once when it stopped.
    pub async fn wait_healthy(&self, name: &str, deadline: Duration) {
        let id = self.id(name);
        let docker = &self.docker;
        eventually(deadline, &format!("{name} healthy"), async || {
            let state = docker
                .inspect_container(&id, None)
                .await
                .map_err(|e| e.to_string())?
                .state
                .unwrap_or_default();
            assert!(
                state.running != Some(false),
                "container {name} stopped (exit code {:?})",
                state.exit_code
            );
            match state.health.and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => Ok(()),
                other => Err(format!("health: {other:?}")),
            }
        })
        .await;
    }

    /// Runs `cmd` in container `name`; its stdout, or an error with its stderr.
    pub async fn exec(&self, name: &str, cmd: &[&str]) -> Result<String, String> {
        let mut result = self
            .container(name)
            .exec(ExecCommand::new(cmd.iter().copied()))
            .await
            .map_err(|e| format!("exec {cmd:?} in {name}: {e}"))?;
        let stdout = result.stdout_to_vec().await.map_err(|e| e.to_string())?;
        let stderr = result.stderr_to_vec().await.map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        if stdout.is_empty() && !stderr.is_empty() {
            return Err(format!(
                "exec {cmd:?} in {name}: {}",
                String::from_utf8_lossy(&stderr).trim()
            ));
        }
        Ok(stdout)
    }

    /// Attaches container `name` to `network`, known there also as `aliases`.
    pub async fn connect(&self, name: &str, network: &str, aliases: &[&str]) {
        let request = NetworkConnectRequest {
            container: self.id(name),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.iter().map(|a| a.to_string()).collect()),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .unwrap_or_else(|e| panic!("connecting {name} to {network}: {e}"));
    }

    /// Detaches container `name` from `network`; the container keeps running.
    pub async fn disconnect(&self, name: &str, network: &str) {
        let request = NetworkDisconnectRequest {
            container: self.id(name),
            force: Some(false),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .unwrap_or_else(|e| panic!("disconnecting {name} from {network}: {e}"));
    }

    /// Stdout and stderr of container `id` (the last `tail` lines, all when `None`).
    async fn logs(&self, id: &str, tail: Option<&str>) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(tail.unwrap_or("all"))
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(output) => text.push_str(&output.to_string()),
                Err(e) => {
                    text.push_str(&format!("\n(log unreadable: {e})"));
                    break;
                }
            }
        }
        text
    }

    async fn print_logs(&self) {
        for (name, container) in &self.containers {
            let text = self.logs(container.id(), Some(LOG_TAIL_LINES)).await;
            eprintln!("\n===== last {LOG_TAIL_LINES} lines of {name} =====\n{text}");
        }
    }

    async fn remove_networks_and_volumes(&mut self) {
        for network in self.networks.drain(..) {
            if let Err(e) = self.docker.remove_network(&network).await {
                eprintln!("could not remove network {network}: {e}");
            }
        }
        for volume in self.volumes.drain(..) {
            let options: Option<testcontainers::bollard::query_parameters::RemoveVolumeOptions> =
                None;
            if let Err(e) = self.docker.remove_volume(&volume, options).await {
                eprintln!("could not remove volume {volume}: {e}");
            }
        }
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        // testcontainers removes a container in its own Drop, blocking this (multi-threaded)
        // runtime's thread the same way.
        let handle = tokio::runtime::Handle::current();
        if std::thread::panicking() {
            tokio::task::block_in_place(|| handle.block_on(self.print_logs()));
        }
        while let Some((_, container)) = self.containers.pop() {
            drop(container);
        }
        tokio::task::block_in_place(|| handle.block_on(self.remove_networks_and_volumes()));
    }
}
