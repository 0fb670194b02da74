//! Automatic replies (RFC 3834): vacation notices and other auto-responders,
//! whose sender is the recipient that answered.

use super::{headers, mime, Analysis, RecipientReport};
use crate::model::{Category, MessageKind};

pub(super) fn parse(msg: &mime::Message, a: &mut Analysis) {
    let Some(addr) = msg.header("from").and_then(headers::first_address) else {
        return;
    };
    if headers::is_daemon_address(addr.as_str()) {
        // a mailer daemon does not go on vacation
        return;
    }
    let mut r = RecipientReport::new(addr);
    r.hint = Some(Category::AutoReply);
    r.diagnostic = msg.header("subject").map(str::to_owned);
    a.kind = MessageKind::AutoReply;
    a.recipients.push(r);
}
