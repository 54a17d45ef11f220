//! The SQL of each [`MailboxTables`] operation over the relay's SQLite tables: `Tables`, a
//! view of a connection (inside a transaction, or autocommitting).

use std::sync::Arc;

use rusqlite::{params, Connection};
use serde_json::Value;

use super::db_err;
use crate::relay::store::{
    MailboxRecord, MailboxSide, MailboxTables, MailboxUsage, NameplateRecord, NameplateSide,
    StoreError, StoredMessage,
};

/// The [`MailboxTables`] over a connection (inside a transaction, or autocommitting).
pub(super) struct Tables<'c> {
    pub(super) conn: &'c Connection,
}

impl Tables<'_> {
    fn exec(
        &self,
        what: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(db_err(what))
    }

    fn exists(
        &self,
        what: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.exists(params))
            .map_err(db_err(what))
    }

    fn strings(
        &self,
        what: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(db_err(what))?;
        let rows = stmt
            .query_map(params, |row| row.get(0))
            .map_err(db_err(what))?;
        rows.collect::<Result<_, _>>().map_err(db_err(what))
    }
}

impl MailboxTables for Tables<'_> {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.strings(
            "listing app ids",
            "SELECT app_id FROM nameplates UNION SELECT app_id FROM mailboxes",
            [],
        )
    }

    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.strings(
            "listing nameplates",
            "SELECT name FROM nameplates WHERE app_id = ?1",
            [appid],
        )
    }

    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        const WHAT: &str = "reading a nameplate";
        // One statement: the nameplate's row joined with its sides (one row with NULL sides
        // if it has none, no row if it does not exist).
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT n.mailbox_id, s.side, s.claimed, s.added FROM nameplates n \
                 LEFT JOIN nameplate_sides s ON s.app_id = n.app_id AND s.name = n.name \
                 WHERE n.app_id = ?1 AND n.name = ?2 ORDER BY s.side",
            )
            .map_err(db_err(WHAT))?;
        let mut rows = stmt.query([appid, name]).map_err(db_err(WHAT))?;
        let mut record: Option<NameplateRecord> = None;
        while let Some(row) = rows.next().map_err(db_err(WHAT))? {
            let record = match &mut record {
                Some(record) => record,
                None => record.insert(NameplateRecord {
                    mailbox_id: row.get(0).map_err(db_err(WHAT))?,
                    sides: Vec::new(),
                }),
            };
            if let Some(side) = row.get::<_, Option<String>>(1).map_err(db_err(WHAT))? {
                record.sides.push(NameplateSide {
                    side,
                    claimed: row.get(2).map_err(db_err(WHAT))?,
                    added: row.get(3).map_err(db_err(WHAT))?,
                });
            }
        }
        Ok(record)
    }

    fn has_nameplate(&self, appid: &str, name: &str) -> Result<bool, StoreError> {
        self.exists(
            "reading a nameplate",
            "SELECT 1 FROM nameplates WHERE app_id = ?1 AND name = ?2",
            [appid, name],
        )
    }

    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "inserting a nameplate";
        if self.has_nameplate(appid, name)? {
            self.exec(
                WHAT,
                "DELETE FROM nameplate_sides WHERE app_id = ?1 AND name = ?2",
                [appid, name],
            )?;
        }
        self.exec(
            WHAT,
            "INSERT OR REPLACE INTO nameplates (app_id, name, mailbox_id) VALUES (?1, ?2, ?3)",
            [appid, name, mailbox_id],
        )?;
        Ok(())
    }

    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        let changed = self.exec(
            "writing a nameplate side",
            "INSERT INTO nameplate_sides (app_id, name, side, claimed, added) \
             SELECT ?1, ?2, ?3, ?4, ?5 \
             WHERE EXISTS (SELECT 1 FROM nameplates WHERE app_id = ?1 AND name = ?2) \
             ON CONFLICT (app_id, name, side) \
             DO UPDATE SET claimed = excluded.claimed, added = excluded.added",
            params![appid, name, side.side, side.claimed, side.added],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "nameplate {name} of app {appid}"
            )));
        }
        Ok(())
    }

    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        const WHAT: &str = "deleting a nameplate";
        self.exec(
            WHAT,
            "DELETE FROM nameplate_sides WHERE app_id = ?1 AND name = ?2",
            [appid, name],
        )?;
        self.exec(
            WHAT,
            "DELETE FROM nameplates WHERE app_id = ?1 AND name = ?2",
            [appid, name],
        )?;
        Ok(())
    }

    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        self.exec(
            "deleting nameplate sides",
            "DELETE FROM nameplate_sides WHERE app_id = ?1 AND side = ?2",
            [appid, side],
        )?;
        Ok(())
    }

    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "deleting the nameplates of a mailbox";
        self.exec(
            WHAT,
            "DELETE FROM nameplate_sides WHERE app_id = ?1 AND name IN \
             (SELECT name FROM nameplates WHERE app_id = ?1 AND mailbox_id = ?2)",
            [appid, mailbox_id],
        )?;
        self.exec(
            WHAT,
            "DELETE FROM nameplates WHERE app_id = ?1 AND mailbox_id = ?2",
            [appid, mailbox_id],
        )?;
        Ok(())
    }

    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.strings(
            "listing mailboxes",
            "SELECT id FROM mailboxes WHERE app_id = ?1",
            [appid],
        )
    }

    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        const WHAT: &str = "reading a mailbox";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT m.for_nameplate, m.updated, s.side, s.opened, s.mood, s.added \
                 FROM mailboxes m LEFT JOIN mailbox_sides s \
                 ON s.app_id = m.app_id AND s.mailbox_id = m.id \
                 WHERE m.app_id = ?1 AND m.id = ?2 ORDER BY s.side",
            )
            .map_err(db_err(WHAT))?;
        let mut rows = stmt.query([appid, id]).map_err(db_err(WHAT))?;
        let mut record: Option<MailboxRecord> = None;
        while let Some(row) = rows.next().map_err(db_err(WHAT))? {
            let record = match &mut record {
                Some(record) => record,
                None => record.insert(MailboxRecord {
                    for_nameplate: row.get(0).map_err(db_err(WHAT))?,
                    updated: row.get(1).map_err(db_err(WHAT))?,
                    sides: Vec::new(),
                }),
            };
            if let Some(side) = row.get::<_, Option<String>>(2).map_err(db_err(WHAT))? {
                record.sides.push(MailboxSide {
                    side,
                    opened: row.get(3).map_err(db_err(WHAT))?,
                    mood: row.get(4).map_err(db_err(WHAT))?,
                    added: row.get(5).map_err(db_err(WHAT))?,
                });
            }
        }
        Ok(record)
    }

    fn has_mailbox(&self, appid: &str, id: &str) -> Result<bool, StoreError> {
        self.exists(
            "reading a mailbox",
            "SELECT 1 FROM mailboxes WHERE app_id = ?1 AND id = ?2",
            [appid, id],
        )
    }

    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        if self.has_mailbox(appid, id)? {
            self.delete_mailbox(appid, id)?;
        }
        self.exec(
            "inserting a mailbox",
            "INSERT INTO mailboxes (app_id, id, for_nameplate, updated) VALUES (?1, ?2, ?3, ?4)",
            params![appid, id, for_nameplate, updated],
        )?;
        Ok(())
    }

    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        let changed = self.exec(
            "writing a mailbox side",
            "INSERT INTO mailbox_sides (app_id, mailbox_id, side, opened, mood, added) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 \
             WHERE EXISTS (SELECT 1 FROM mailboxes WHERE app_id = ?1 AND id = ?2) \
             ON CONFLICT (app_id, mailbox_id, side) \
             DO UPDATE SET opened = excluded.opened, mood = excluded.mood, added = excluded.added",
            params![appid, id, side.side, side.opened, side.mood, side.added],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("mailbox {id} of app {appid}")));
        }
        Ok(())
    }

    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.exec(
            "touching a mailbox",
            "UPDATE mailboxes SET updated = ?3 WHERE app_id = ?1 AND id = ?2",
            params![appid, id, when],
        )?;
        Ok(())
    }

    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        const WHAT: &str = "deleting a mailbox";
        self.exec(
            WHAT,
            "DELETE FROM messages WHERE app_id = ?1 AND mailbox_id = ?2",
            [appid, id],
        )?;
        self.exec(
            WHAT,
            "DELETE FROM mailbox_sides WHERE app_id = ?1 AND mailbox_id = ?2",
            [appid, id],
        )?;
        self.exec(
            WHAT,
            "DELETE FROM mailboxes WHERE app_id = ?1 AND id = ?2",
            [appid, id],
        )?;
        Ok(())
    }

    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        let msg_id = message.msg_id.as_ref().map(Value::to_string);
        let changed = self.exec(
            "adding a message",
            "INSERT INTO messages (app_id, mailbox_id, side, phase, body, server_rx, msg_id) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
             WHERE EXISTS (SELECT 1 FROM mailboxes WHERE app_id = ?1 AND id = ?2)",
            params![
                appid,
                mailbox_id,
                message.side,
                message.phase,
                message.body,
                message.server_rx,
                msg_id
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "mailbox {mailbox_id} of app {appid}"
            )));
        }
        Ok(())
    }

    fn mailbox_usage(&self, appid: &str, mailbox_id: &str) -> Result<MailboxUsage, StoreError> {
        // Summed in SQLite from the values' sizes (`octet_length`: UTF-8 bytes, without
        // loading the bodies), as `StoredMessage::counted_bytes` counts them (the id is
        // stored as its JSON text).
        let (messages, bytes) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(octet_length(side) + octet_length(phase) \
                 + octet_length(body) + COALESCE(octet_length(msg_id), 0)), 0) \
                 FROM messages WHERE app_id = ?1 AND mailbox_id = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row([appid, mailbox_id], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
            })
            .map_err(db_err("counting a mailbox's messages"))?;
        let size = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(MailboxUsage {
            messages: size(messages),
            bytes: size(bytes),
        })
    }

    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        const WHAT: &str = "reading messages";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT side, phase, body, server_rx, msg_id FROM messages \
                 WHERE app_id = ?1 AND mailbox_id = ?2 ORDER BY seq",
            )
            .map_err(db_err(WHAT))?;
        let rows = stmt
            .query_map([appid, mailbox_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, f64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db_err(WHAT))?;
        rows.into_iter()
            .map(|(side, phase, body, server_rx, msg_id)| {
                let msg_id = match msg_id {
                    None => None,
                    Some(text) => {
                        Some(
                            serde_json::from_str(&text).map_err(|e| StoreError::Database {
                                what: "reading a message id",
                                source: Arc::new(e),
                            })?,
                        )
                    }
                };
                Ok(StoredMessage {
                    side,
                    phase,
                    body,
                    server_rx,
                    msg_id,
                })
            })
            .collect()
    }
}
