//! One plain GET from a test: the worker's `/readyz` and `/metrics`, and the like.

/// The status and body of `GET url`.
pub async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}
