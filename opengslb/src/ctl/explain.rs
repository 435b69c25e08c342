//! `opengslb explain`: what a query gets now, and the rule that put each backend in or out.

use std::net::IpAddr;

use super::{
    ApiArgs,
    client::Failure,
    commands::show,
    reply::{Explanation, Policy},
    table::Table,
};

pub fn run(args: &ApiArgs, name: &str, qtype: &str, client: Option<IpAddr>) -> Result<(), Failure> {
    let client = client.map(|c| c.to_string());
    let mut query = vec![("name", name), ("type", qtype)];
    if let Some(c) = &client {
        query.push(("client", c));
    }
    show(args, &["dns", "explain"], &query, render)
}

fn words(items: &[String]) -> String {
    items.join(" ")
}

/// The lines a policy adds: how the draw orders or places the records.
fn policy_rows(t: &mut Table, p: &Policy) {
    if let Some(order) = &p.order {
        t.row(["order", &words(order)]);
    }
    if let Some(weights) = &p.weights {
        let shares: Vec<String> = weights
            .iter()
            .map(|w| format!("{} {}/{}", w.address, w.slots, w.of))
            .collect();
        t.row(["weights", &shares.join(", ")]);
    }
    if let Some(geo) = &p.geo {
        let region = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".to_owned());
        t.row(["default region", &region(&geo.default_region)]);
        if geo.client_region_id.is_some() {
            t.row(["client region", &region(&geo.client_region)]);
        }
        if let Some(ecs) = &geo.ecs {
            t.row([
                "with ECS",
                &format!(
                    "region {}, scope /{}: {}",
                    region(&ecs.region),
                    ecs.scope_prefix,
                    words(&ecs.records)
                ),
            ]);
        }
        let placed: Vec<String> = geo
            .records
            .iter()
            .map(|r| format!("{} ({})", r.address, region(&r.region)))
            .collect();
        t.row(["record regions", &placed.join(", ")]);
    }
}

fn render(e: &Explanation) -> String {
    let from = e
        .client
        .as_deref()
        .map_or(String::new(), |c| format!(" from {c}"));
    let mut out = format!("{} {}{from}\n", e.name, e.qtype);
    let mut t = Table::new(&[]);
    let answer = match (e.answer.as_str(), e.ttl, e.max_answers) {
        ("records", Some(ttl), Some(max)) => {
            format!("records, ttl {ttl}, at most {max} per answer")
        }
        ("nodata", ..) => format!("nodata: no {} record in DNS", e.qtype),
        (other, ..) => other.to_owned(),
    };
    t.row(["answer", &answer]);
    t.row(["records", &words(&e.records)]);
    t.row(["candidates", &words(&e.candidates)]);
    let draw = e
        .policy
        .as_ref()
        .map_or(String::new(), |p| format!(" (draw: {})", p.kind));
    t.row(["algorithm", &format!("{}{draw}", e.algorithm)]);
    let all_down = if e.all_down { "yes" } else { "no" };
    t.row([
        "all down",
        &format!("{all_down} (policy {})", e.all_down_policy),
    ]);
    if let Some(p) = &e.policy {
        policy_rows(&mut t, p);
    }
    out.push_str(&t.render());
    if e.backends.is_empty() {
        out.push_str("\nno backends\n");
        return out;
    }
    let mut b = Table::new(&[
        "ADDRESS", "PORT", "FAMILY", "REGION", "SOURCE", "STATUS", "REASON", "WEIGHT", "IN TABLE",
    ]);
    for x in &e.backends {
        b.row([
            x.address.as_str(),
            &x.port.to_string(),
            &x.family,
            &x.region,
            &x.source,
            &x.effective_status,
            &x.reason,
            &x.weight.to_string(),
            if x.in_table { "yes" } else { "no" },
        ]);
    }
    out.push('\n');
    out.push_str(&b.render());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_explanation_shows_the_answer_the_draw_and_each_backend() {
        let e: Explanation = serde_json::from_value(json!({
            "name": "app.demo.local", "type": "A", "client": "192.0.2.7",
            "algorithm": "weighted", "all_down_policy": "all", "all_down": false,
            "answer": "records", "ttl": 5, "max_answers": 1, "rotation": 0,
            "policy": {"kind": "weighted", "weights": [
                {"address": "192.0.2.1", "slots": 3, "of": 4},
                {"address": "192.0.2.2", "slots": 1, "of": 4}]},
            "records": ["192.0.2.1"], "candidates": ["192.0.2.1", "192.0.2.2"],
            "backends": [
                {"address": "192.0.2.1", "port": 80, "family": "A", "region": "eu",
                 "source": "static", "effective_status": "healthy", "reason": "healthy",
                 "weight": 300, "in_table": true},
                {"address": "192.0.2.3", "port": 80, "family": "A", "region": "eu",
                 "source": "static", "effective_status": "unhealthy", "reason": "override",
                 "weight": 100, "in_table": false}],
            "generated_at": "2026-01-01T10:00:10.000Z"
        }))
        .unwrap();
        assert_eq!(
            render(&e),
            "\
app.demo.local A from 192.0.2.7
answer      records, ttl 5, at most 1 per answer
records     192.0.2.1
candidates  192.0.2.1 192.0.2.2
algorithm   weighted (draw: weighted)
all down    no (policy all)
weights     192.0.2.1 3/4, 192.0.2.2 1/4

ADDRESS    PORT  FAMILY  REGION  SOURCE  STATUS     REASON    WEIGHT  IN TABLE
192.0.2.1  80    A       eu      static  healthy    healthy   300     yes
192.0.2.3  80    A       eu      static  unhealthy  override  100     no
"
        );
    }
}
