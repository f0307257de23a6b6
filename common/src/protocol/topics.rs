//! Topic strings: built for one cluster, and incoming ones routed to what
//! they are ([`Route`]). The names inside a routed topic are checked
//! ([`super::validate_name`]), so a handler may use them in file names.

use super::names::validate_name;

/// Builds every topic string of one cluster.
#[derive(Debug, Clone)]
pub struct Topics {
    root: String,
}

/// What an incoming topic is, with the (checked) names it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    AgentStatus { agent: String },
    AgentTasks { agent: String },
    JobEvents { job: String },
    JobController { job: String },
    JobCancel { job: String },
}

impl Route {
    /// Whether messages on this topic are retained, so they may be old when
    /// they arrive (a status or a Last Will from before this program started).
    pub fn is_retained(&self) -> bool {
        matches!(self, Route::AgentStatus { .. } | Route::JobController { .. })
    }
}

impl Topics {
    pub fn new(cluster: &str) -> Self {
        Topics { root: format!("ipdc/{cluster}") }
    }
    pub fn agent_status(&self, agent: &str) -> String {
        format!("{}/agents/{agent}/status", self.root)
    }
    /// Wildcard matching every agent's status.
    pub fn all_agent_statuses(&self) -> String {
        format!("{}/agents/+/status", self.root)
    }
    pub fn agent_tasks(&self, agent: &str) -> String {
        format!("{}/agents/{agent}/tasks", self.root)
    }
    pub fn job_events(&self, job: &str) -> String {
        format!("{}/jobs/{job}/events", self.root)
    }
    pub fn job_controller(&self, job: &str) -> String {
        format!("{}/jobs/{job}/controller", self.root)
    }
    pub fn job_cancel(&self, job: &str) -> String {
        format!("{}/jobs/{job}/cancel", self.root)
    }
    /// Wildcard matching every job's events.
    pub fn all_job_events(&self) -> String {
        format!("{}/jobs/+/events", self.root)
    }
    /// Wildcard matching every job's controller status.
    pub fn all_job_controllers(&self) -> String {
        format!("{}/jobs/+/controller", self.root)
    }

    /// What `topic` is, or None for a topic of another cluster, of another
    /// shape, or with a name that is not valid.
    pub fn route(&self, topic: &str) -> Option<Route> {
        let rest = topic.strip_prefix(&self.root)?.strip_prefix('/')?;
        let mut levels = rest.split('/');
        let (Some(kind), Some(name), Some(leaf), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return None;
        };
        validate_name("name", name).ok()?;
        let name = name.to_string();
        Some(match (kind, leaf) {
            ("agents", "status") => Route::AgentStatus { agent: name },
            ("agents", "tasks") => Route::AgentTasks { agent: name },
            ("jobs", "events") => Route::JobEvents { job: name },
            ("jobs", "controller") => Route::JobController { job: name },
            ("jobs", "cancel") => Route::JobCancel { job: name },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_live_under_the_cluster() {
        let t = Topics::new("lab");
        assert_eq!(t.agent_status("pi-1"), "ipdc/lab/agents/pi-1/status");
        assert_eq!(t.all_agent_statuses(), "ipdc/lab/agents/+/status");
        assert_eq!(t.agent_tasks("pi-1"), "ipdc/lab/agents/pi-1/tasks");
        assert_eq!(t.job_events("j1"), "ipdc/lab/jobs/j1/events");
        assert_eq!(t.job_controller("j1"), "ipdc/lab/jobs/j1/controller");
        assert_eq!(t.all_job_controllers(), "ipdc/lab/jobs/+/controller");
    }

    #[test]
    fn every_topic_built_routes_back_to_what_it_names() {
        let t = Topics::new("lab");
        assert_eq!(t.route(&t.agent_status("pi-1")), Some(Route::AgentStatus { agent: "pi-1".into() }));
        assert_eq!(t.route(&t.agent_tasks("pi-1")), Some(Route::AgentTasks { agent: "pi-1".into() }));
        assert_eq!(t.route(&t.job_events("j1")), Some(Route::JobEvents { job: "j1".into() }));
        assert_eq!(t.route(&t.job_controller("j1")), Some(Route::JobController { job: "j1".into() }));
    }

    #[test]
    fn other_clusters_shapes_and_unsafe_names_do_not_route() {
        let t = Topics::new("lab");
        for topic in [
            "ipdc/other/jobs/j1/controller",
            "ipdc/lab2/jobs/j1/controller",
            "ipdc/lab/jobs/j1",
            "ipdc/lab/jobs/j1/controller/x",
            "ipdc/lab/jobs//controller",
            "ipdc/lab/jobs/../controller",
            "ipdc/lab/jobs/./events",
            "ipdc/lab/agents/.hidden/status",
            "ipdc/lab/agents/pi-1/config",
            "ipdc/lab/jobs/j1/status",
            "ipdc/lab/things/j1/events",
            "ipdc/lab",
        ] {
            assert_eq!(t.route(topic), None, "{topic}");
        }
    }
}
