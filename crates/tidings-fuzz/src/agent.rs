//! The agent's state file (`tidings_agent::state`): a file on disk that another program, a
//! crash mid-write or a person with an editor may have changed.

use tidings_agent::state::State;

/// The whole input is the file.
///
/// Properties: no panic; a state that loads, saved (as `save` writes it) and loaded again, is
/// the same, and each of its subscriptions gives its keys, channel and PushSubscription.
pub fn agent_state(data: &[u8]) {
    let Ok(state) = State::parse(data) else { return };
    let saved = serde_json::to_vec_pretty(&state).expect("state serializes");
    assert_eq!(State::parse(&saved).as_ref(), Ok(&state), "a loaded state does not save and load back");
    for subscription in &state.subscriptions {
        assert!(subscription.push_subscription().is_ok());
        assert!(subscription.channel().is_ok());
    }
}
