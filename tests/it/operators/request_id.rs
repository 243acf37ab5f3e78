//! `report --request-id`: what Alibaba's support quotes finds the job, for the RequestId of a
//! successful call and of an error answer alike.

use super::*;

#[tokio::test]
async fn report_finds_the_job_of_any_call_by_request_id() {
    let env = TestEnv::with_running(&["rid-a", "rid-b"]).await;
    let _worker = env.spawn_worker(FAST);
    cli_ok(
        &env,
        &["enqueue", "--batch", "rid", "rid-a", "rid-b", "rid-ghost"],
    );
    env.wait_terminal(3, WAIT).await;
    for row in env.jobs().await {
        let id: uuid::Uuid = row["job_id"].as_str().unwrap().parse().unwrap();
        let attempts = env.attempts(id).await;
        let rid = attempts[0]["request_id"]
            .as_str()
            .expect("every answer has a RequestId")
            .to_owned();
        let found = cli_json(&env, &["report", "--request-id", &rid, "--format", "json"]);
        let jobs = found["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 1, "{rid}: {found}");
        assert_eq!(jobs[0]["job_id"], id.to_string());
        assert_eq!(jobs[0]["caster_id"], row["caster_id"]);
    }
    let none = cli_ok(&env, &["report", "--request-id", "00000000-NOPE"]);
    assert!(none.contains("no jobs match"), "{none}");
}
