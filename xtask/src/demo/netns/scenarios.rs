//! The three scenarios, each on webapp2 once all three webapps are answered and their agents report:
//! nginx stopped then started (the failure an agent sees only by checking), the drain file created then
//! removed (the agent knows first; nginx still serves), the agent killed with SIGKILL then started (the
//! overwatch notices the silence). Each is timed from the client's records.

use std::{fs::File, time::Duration};

use anyhow::{Result, bail};

use super::{
    Demo, STEP, WEBAPPS, client,
    client::Records as _,
    process::Proc,
    report::{Outcome, Scenario, secs},
};

/// The webapp the scenarios act on.
const TARGET: &str = WEBAPPS[1];
/// How long the client must go without webapp2 in an answer for it to count as out of DNS.
const QUIET: Duration = Duration::from_secs(2);
/// Answers the client must have had in that time for their silence about webapp2 to mean something.
const MIN_ANSWERS: usize = 20;
/// Requests that fail this soon after webapp2 is answered again still count to the scenario.
const SETTLE: Duration = Duration::from_secs(1);
/// Webapp2's drain file, as its agent sees it.
const DRAIN_FILE: &str = "/tmp/drain";

impl Demo {
    /// Runs the scenarios in turn; what each measured.
    pub(super) fn scenarios(&mut self) -> Result<Vec<(Scenario, Outcome)>> {
        let mut out = Vec::new();
        for s in [Scenario::NginxStop, Scenario::Drain, Scenario::AgentKill] {
            self.wait("three agents report and webapp1-3 are answered", |d| {
                Ok(d.agents_reporting()? == WEBAPPS.len() && d.all_answered())
            })?;
            self.timeline
                .note("steady: three agents report, DNS answers webapp1-3 in turn");
            eprintln!();
            self.timeline
                .note(&format!("scenario {}: {}", out.len() + 1, s.title()));
            out.push((s, self.scenario(s)?));
            eprintln!();
        }
        Ok(out)
    }

    /// Agents alive in the overwatch's book with a backend reported.
    fn agents_reporting(&self) -> Result<usize> {
        let v = self.api("/api/v1/overwatch/agents")?;
        Ok(v["agents"].as_array().map_or(0, |agents| {
            agents
                .iter()
                .filter(|a| a["state"] == "alive" && a["backends"].as_u64() >= Some(1))
                .count()
        }))
    }

    /// Trigger, wait until webapp2 is out of DNS, undo, wait until it is back: the figures.
    fn scenario(&mut self, s: Scenario) -> Result<Outcome> {
        let ip = self.node(TARGET).addr;
        let start = self.timeline.now();
        self.trigger(s)?;
        self.wait(&format!("{ip} leaves DNS"), |d| Ok(d.gone(start)))?;
        let last = self.records().last_with(ip, start);
        let removal = last.map_or(Duration::ZERO, |t| t.saturating_sub(start));
        match last {
            Some(at) => self.timeline.note_at(
                at,
                &format!(
                    "last answer with {ip}: out of DNS {} after the trigger",
                    secs(removal)
                ),
            ),
            None => self
                .timeline
                .note_at(start, &format!("no answer with {ip} after the trigger")),
        }
        if let Scenario::Drain = s {
            self.while_drained()?;
        }
        let undo = self.timeline.now();
        self.undo(s)?;
        self.wait(&format!("{ip} is answered again"), |d| {
            Ok(d.records().first_with(ip, undo).is_some())
        })?;
        let back = self
            .records()
            .first_with(ip, undo)
            .expect("just waited for it");
        let recovery = back.saturating_sub(undo);
        self.timeline.note_at(
            back,
            &format!("{ip} answered again, {} after the undo", secs(recovery)),
        );
        self.wait("a second more of requests", |d| {
            Ok(d.timeline.now() >= back + SETTLE)
        })?;
        let failed = self.records().failed(start, back + SETTLE);
        self.timeline.note(&format!(
            "{failed} requests failed from the trigger until a second after {ip} came back"
        ));
        Ok(Outcome {
            removal,
            failed,
            recovery,
        })
    }

    /// Whether webapp2 has been absent from every answer for [`QUIET`], all after `start`, while the
    /// client kept getting answers.
    fn gone(&self, start: Duration) -> bool {
        let ip = self.node(TARGET).addr;
        let Some(from) = self
            .timeline
            .now()
            .checked_sub(QUIET)
            .filter(|&f| f >= start)
        else {
            return false;
        };
        let records = self.records();
        let recent = records.since(from);
        recent.iter().filter(|r| !r.answer.is_empty()).count() >= MIN_ANSWERS
            && !recent.iter().any(|r| r.answer.contains(&ip))
    }

    fn trigger(&mut self, s: Scenario) -> Result<()> {
        match s {
            Scenario::NginxStop => {
                self.timeline.note("webapp2: nginx -s stop");
                let mut cmd = self.nginx_command(TARGET)?;
                cmd.args(["-s", "stop"]);
                let log = self.node(TARGET).dir.join("nginx.log");
                let mut signaller = Proc::spawn("webapp2 nginx -s stop".into(), &mut cmd, log)?;
                let status = signaller.wait(STEP)?;
                if !status.is_some_and(|s| s.success()) {
                    signaller.kill();
                    bail!("webapp2: nginx -s stop failed ({status:?})");
                }
                if self.proc("webapp2 nginx").wait(STEP)?.is_none() {
                    bail!("webapp2: nginx still runs {STEP:?} after nginx -s stop");
                }
                self.timeline.note("webapp2: nginx exited");
            }
            Scenario::Drain => {
                self.timeline.note("webapp2: touch /tmp/drain");
                File::create(self.node(TARGET).host_path(DRAIN_FILE))?;
            }
            Scenario::AgentKill => {
                self.timeline.note("webapp2: kill -9 the agent");
                let agent = self.proc("webapp2 agent");
                agent.signal(libc::SIGKILL);
                if agent.wait(STEP)?.is_none() {
                    bail!("webapp2: the agent still runs {STEP:?} after SIGKILL");
                }
            }
        }
        Ok(())
    }

    fn undo(&mut self, s: Scenario) -> Result<()> {
        match s {
            Scenario::NginxStop => {
                self.timeline.note("webapp2: nginx started again");
                let mut cmd = self.nginx_command(TARGET)?;
                self.proc("webapp2 nginx").respawn(&mut cmd)?;
            }
            Scenario::Drain => {
                self.timeline.note("webapp2: rm /tmp/drain");
                std::fs::remove_file(self.node(TARGET).host_path(DRAIN_FILE))?;
            }
            Scenario::AgentKill => {
                self.timeline.note("webapp2: agent started again");
                let mut cmd = self.agent_command(TARGET)?;
                self.proc("webapp2 agent").respawn(&mut cmd)?;
            }
        }
        Ok(())
    }

    /// While drained, webapp2's nginx still answers `/health` with 200, and the API says why it is out.
    fn while_drained(&mut self) -> Result<()> {
        let ip = self.node(TARGET).addr;
        match self.in_client(move || client::get((ip, 80).into(), &ip.to_string(), "/health"))? {
            Some((200, _)) => self.timeline.note(&format!(
                "GET http://{ip}/health from the client: 200, nginx still serves"
            )),
            other => bail!("GET http://{ip}/health while drained: {other:?}, expected a 200"),
        }
        let mut reason = String::new();
        let seen = self.wait("the API gives webapp2's reason as agent_draining", |d| {
            let v = d.api("/api/v1/health/servers")?;
            reason = v["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["address"] == ip.to_string()))
                .and_then(|s| s["reason"].as_str())
                .unwrap_or("(no such server)")
                .to_owned();
            Ok(reason == "agent_draining")
        });
        seen.map_err(|e| e.context(format!("its reason: {reason}")))?;
        self.timeline.note(&format!(
            "GET /api/v1/health/servers: {ip} out, reason agent_draining"
        ));
        Ok(())
    }
}
