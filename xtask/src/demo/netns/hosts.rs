//! Bringing the hosts up: the network, then nginx on the webapps, the overwatch, the client's loop and
//! the agents, each from Demo 2's config files as they are (copied owner-only into the host's `/run`).

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    process::Command,
};

use anyhow::Result;

use super::{
    APP, CLIENT, Demo, HOSTS, OVERWATCH, WEBAPPS,
    client::{self, Client, Resolver},
    net::Network,
    node::Node,
    process::Proc,
    report::Xdp,
};

/// Where the config files are, as the hosts' processes see them.
const OVERWATCH_YAML: &str = "/run/opengslb/overwatch.yaml";
const AGENT_YAML: &str = "/run/opengslb/agent.yaml";
const NGINX_CONF: &str = "/run/nginx/nginx.conf";

impl Demo {
    /// Builds the hosts and starts, in this order, nginx, the overwatch, the client and the agents (so the
    /// client sees what DNS answers before any agent reports); whether XDP attached.
    pub(super) fn start(&mut self, overwatch_yaml: &str, agent_yaml: &str) -> Result<Xdp> {
        self.net = Some(Network::create(self.pid, &HOSTS)?);
        let net = self.net.as_ref().expect("just created");
        for (name, addr) in HOSTS {
            self.nodes
                .push(Node::new(name, addr, &net.path(name), &self.run_dir)?);
        }
        self.timeline.note(
            "hosts up: overwatch 10.20.0.10, webapp1-3 10.20.0.21-23, client 10.20.0.100 \
             (network namespaces on one bridge)",
        );

        for name in WEBAPPS {
            let web = self.node(name);
            web.write(NGINX_CONF, &nginx_conf(name))?;
            let log = web.dir.join("nginx.log");
            let mut cmd = self.nginx_command(name)?;
            self.procs
                .push(Proc::spawn(format!("{name} nginx"), &mut cmd, log)?);
        }
        self.wait("nginx answers /health on webapp1-3", |d| {
            let addrs: Vec<Ipv4Addr> = WEBAPPS.iter().map(|w| d.node(w).addr).collect();
            d.in_client(move || {
                addrs.iter().all(|&a| {
                    client::get((a, 80).into(), &a.to_string(), "/health")
                        .is_some_and(|(s, _)| s == 200)
                })
            })
        })?;
        self.timeline.note("nginx serves on webapp1-3");

        let ow = self.node(OVERWATCH);
        ow.write(OVERWATCH_YAML, overwatch_yaml)?;
        let mut cmd = ow.command(&self.bin)?;
        cmd.args([
            "overwatch",
            "--detach-on-exit",
            "--config",
            OVERWATCH_YAML,
            "--bpffs-root",
        ])
        .arg(&self.bpffs);
        let log = ow.dir.join("overwatch.log");
        self.procs
            .push(Proc::spawn(OVERWATCH.into(), &mut cmd, log)?);
        let dns = SocketAddr::from((self.node(OVERWATCH).addr, 53));
        self.wait("the overwatch answers DNS", |d| {
            d.in_client(move || {
                Resolver::new(dns, APP)
                    .ok()
                    .and_then(|mut r| r.resolve())
                    .is_some_and(|a| !a.is_empty())
            })
        })?;
        let xdp = self.xdp_attached();
        self.timeline.note(&match &xdp {
            Xdp::Attached(mode) => {
                format!("overwatch answers DNS, XDP attached to its eth0 ({mode} mode)")
            }
            Xdp::Not(why) => format!("overwatch answers DNS, XDP not attached: {why}"),
        });

        self.client = Some(Client::start(
            self.node(CLIENT).netns()?,
            self.timeline.t0(),
            dns,
            APP,
        )?);
        self.timeline
            .note("client: resolving app.demo.local and GET / from the answer, 250 a second");

        for name in WEBAPPS {
            let web = self.node(name);
            web.write(AGENT_YAML, agent_yaml)?;
            let log = web.dir.join("agent.log");
            let mut cmd = self.agent_command(name)?;
            self.procs
                .push(Proc::spawn(format!("{name} agent"), &mut cmd, log)?);
        }
        self.timeline.note("agents started on webapp1-3");
        Ok(xdp)
    }

    pub(super) fn nginx_command(&self, web: &str) -> Result<Command> {
        let mut cmd = self.node(web).command(&self.nginx)?;
        cmd.args(["-p", "/run/nginx", "-c", NGINX_CONF, "-e", "stderr"]);
        Ok(cmd)
    }

    pub(super) fn agent_command(&self, web: &str) -> Result<Command> {
        let mut cmd = self.node(web).command(&self.bin)?;
        cmd.args(["agent", "--config", AGENT_YAML]);
        Ok(cmd)
    }

    /// What the overwatch logged about XDP: attached, or why not.
    fn xdp_attached(&self) -> Xdp {
        let log =
            fs::read_to_string(self.node(OVERWATCH).dir.join("overwatch.log")).unwrap_or_default();
        if log.contains("XDP answers A/AAAA") {
            // `XDP attached iface="eth0" mode="skb"`
            let mode = log
                .lines()
                .find(|l| l.contains("XDP attached"))
                .and_then(|l| l.split_once("mode=")?.1.split_whitespace().next())
                .unwrap_or("?")
                .trim_matches('"');
            return Xdp::Attached(mode.to_owned());
        }
        Xdp::Not(
            log.lines()
                .find(|l| l.contains("XDP is not available"))
                .unwrap_or("the overwatch's log does not say")
                .trim()
                .to_owned(),
        )
    }

    /// `answered N` of `opengslb xdp counters` (0 when it cannot be read: XDP did not attach).
    pub(super) fn xdp_answered(&self) -> u64 {
        let out = Command::new(&self.bin)
            .args(["xdp", "counters", "--bpffs-root"])
            .arg(&self.bpffs)
            .output();
        out.ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()?
                    .strip_prefix("answered ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }
}

/// nginx for a webapp: `/` and `/health` answer 200 whatever `/tmp/drain` says (draining is the agent's
/// business); every path it writes is in the host's own `/run`.
fn nginx_conf(name: &str) -> String {
    format!(
        "master_process off;\ndaemon off;\npid /run/nginx/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path /run/nginx/body;\n  proxy_temp_path /run/nginx/proxy;\n  \
         fastcgi_temp_path /run/nginx/fastcgi;\n  uwsgi_temp_path /run/nginx/uwsgi;\n  scgi_temp_path /run/nginx/scgi;\n  \
         server {{\n    listen 80;\n    location = /health {{ return 200 \"ok\\n\"; }}\n    \
         location / {{ return 200 \"{name}\\n\"; }}\n  }}\n}}\n"
    )
}
