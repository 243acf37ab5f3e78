//! Several broker addresses: `AMQP_URL` may list the nodes of a cluster, comma-separated. A
//! command tries them in the order given; a worker shuffles them at every (re)connection, so
//! that replicas spread over the nodes and one that lost its node goes to any other.

use rand::seq::SliceRandom;

/// The addresses of a list, in its order (blanks around commas ignored).
pub(crate) fn nodes(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// The order in which to try the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// As listed: the first that answers (commands).
    AsListed,
    /// Shuffled (workers).
    Spread,
}

pub(crate) fn in_order<'a>(list: &'a str, order: Order, rng: &mut impl rand::Rng) -> Vec<&'a str> {
    let mut nodes = nodes(list);
    if order == Order::Spread {
        nodes.shuffle(rng);
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const LIST: &str =
        "amqp://u:p@rabbit-0:5672/%2f, amqp://u:p@rabbit-1:5672/%2f,,amqp://u:p@rabbit-2:5672/%2f";

    #[test]
    fn a_list_is_split_on_commas_and_one_address_is_a_list_of_one() {
        assert_eq!(nodes(LIST).len(), 3);
        assert_eq!(nodes(LIST)[1], "amqp://u:p@rabbit-1:5672/%2f");
        assert_eq!(nodes("amqp://localhost"), ["amqp://localhost"]);
    }

    #[test]
    fn commands_keep_the_order_and_workers_spread_over_every_node() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(in_order(LIST, Order::AsListed, &mut rng), nodes(LIST));
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let spread = in_order(LIST, Order::Spread, &mut rng);
            let mut sorted = spread.clone();
            sorted.sort();
            let mut all = nodes(LIST);
            all.sort();
            assert_eq!(sorted, all, "every node, once");
            firsts.insert(spread[0]);
        }
        assert_eq!(firsts.len(), 3, "each node comes first sometimes");
    }
}
