//! The checks of how connectors join pipelines, as the collector makes
//! them: a connector is an exporter of at least one pipeline and a receiver
//! of at least one, each side of a signal it can join to the other, and no
//! chain of connectors leads a pipeline back to itself.

use std::collections::BTreeMap;

use flowtel_core::{
    ComponentId, Signal,
    config::{CheckedPipeline, ConfigError},
};

use crate::components::ComponentType;

/// What is wrong with the connectors' wiring, each with its path.
pub(super) fn check(
    connectors: &BTreeMap<ComponentId, &ComponentType>,
    pipelines: &[CheckedPipeline],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (id, connector) in connectors {
        let exporting: Vec<&CheckedPipeline> = pipelines.iter().filter(|p| p.exporters.contains(id)).collect();
        let receiving: Vec<&CheckedPipeline> = pipelines.iter().filter(|p| p.receivers.contains(id)).collect();
        let path = format!("connectors::{id}");
        let joins = joins_text(connector.joins);
        match (exporting.is_empty(), receiving.is_empty()) {
            (true, true) => {}
            (false, true) => errors.push(ConfigError::new(
                path,
                format!(
                    "used as an exporter by {} but as a receiver by no pipeline; a connector joins the pipelines it \
                     exports from to pipelines that list it under `receivers`",
                    names(&exporting)
                ),
            )),
            (true, false) => errors.push(ConfigError::new(
                path,
                format!(
                    "used as a receiver by {} but as an exporter by no pipeline; list it under the `exporters` of the \
                     pipelines it should take data from",
                    names(&receiving)
                ),
            )),
            (false, false) => {
                let joined = |from: Signal, to: Signal| connector.joins.contains(&(from, to));
                for pipeline in &exporting {
                    if !receiving.iter().any(|r| joined(pipeline.id.signal(), r.id.signal())) {
                        errors.push(ConfigError::new(
                            format!("service::pipelines::{}::exporters", pipeline.id),
                            format!(
                                "`{id}` cannot turn {} into what the pipelines receiving from it take ({}); it joins {joins}",
                                pipeline.id.signal(),
                                names(&receiving)
                            ),
                        ));
                    }
                }
                for pipeline in &receiving {
                    if !exporting.iter().any(|e| joined(e.id.signal(), pipeline.id.signal())) {
                        errors.push(ConfigError::new(
                            format!("service::pipelines::{}::receivers", pipeline.id),
                            format!(
                                "`{id}` makes no {} from what the pipelines exporting to it carry ({}); it joins {joins}",
                                pipeline.id.signal(),
                                names(&exporting)
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(connectors, pipelines) {
        errors.push(ConfigError::new(
            "service::pipelines",
            format!("connectors lead a pipeline back to itself: {cycle}; data would go round for ever"),
        ));
    }
    errors
}

fn names(pipelines: &[&CheckedPipeline]) -> String {
    pipelines.iter().map(|p| format!("`{}`", p.id)).collect::<Vec<_>>().join(", ")
}

fn joins_text(joins: &[(Signal, Signal)]) -> String {
    joins.iter().map(|(from, to)| format!("{from} → {to}")).collect::<Vec<_>>().join(", ")
}

/// The connectors from `from` into `to` that carry data between them.
fn links<'a>(
    connectors: &'a BTreeMap<ComponentId, &ComponentType>,
    from: &'a CheckedPipeline,
    to: &'a CheckedPipeline,
) -> impl Iterator<Item = &'a ComponentId> {
    from.exporters.iter().filter(move |id| {
        to.receivers.contains(id)
            && connectors.get(*id).is_some_and(|c| c.joins.contains(&(from.id.signal(), to.id.signal())))
    })
}

/// A cycle of pipelines through connectors, written `a → c → b → d → a`.
fn find_cycle(connectors: &BTreeMap<ComponentId, &ComponentType>, pipelines: &[CheckedPipeline]) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        at: usize,
        connectors: &BTreeMap<ComponentId, &ComponentType>,
        pipelines: &[CheckedPipeline],
        marks: &mut [Mark],
        path: &mut Vec<(usize, ComponentId)>,
    ) -> Option<String> {
        marks[at] = Mark::OnPath;
        for (next, to) in pipelines.iter().enumerate() {
            let Some(link) = links(connectors, &pipelines[at], to).next() else { continue };
            path.push((at, link.clone()));
            match marks[next] {
                Mark::OnPath => {
                    let start = path.iter().position(|(index, _)| *index == next).unwrap_or(0);
                    let mut text: Vec<String> = Vec::new();
                    for (index, connector) in &path[start..] {
                        text.push(pipelines[*index].id.to_string());
                        text.push(connector.to_string());
                    }
                    text.push(pipelines[next].id.to_string());
                    return Some(text.join(" → "));
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, connectors, pipelines, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
            path.pop();
        }
        marks[at] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; pipelines.len()];
    (0..pipelines.len()).find_map(|start| {
        if marks[start] != Mark::New {
            return None;
        }
        visit(start, connectors, pipelines, &mut marks, &mut Vec::new())
    })
}
