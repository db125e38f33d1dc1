package console

import (
	"net/http"
	"strings"
)

// labels are every word the console shows, in German and English.
var labels = map[string]map[string]string{
	"en": {
		"title": "Tocsin control room", "signin": "Sign in", "operator": "Operator", "password": "Password",
		"code": "Code from the authenticator app", "signin_key": "Sign in with a security key", "signout": "Sign out",
		"dashboard": "Dashboard", "compose": "New alert", "sources": "Sources", "audit": "Audit",
		"live_alerts": "Alerts", "pending": "Waiting for approval", "none": "None.", "maintenance_banner": "In maintenance",
		"until": "until", "by": "by", "reason": "Reason", "note": "Note", "retract": "Retract",
		"false_alarm": "False alarm", "all_clear": "All clear", "superseded": "Superseded",
		"state": "State", "channel": "Channel", "targets": "Targets", "queued": "Queued", "in_flight": "In flight",
		"delivered": "Delivered", "sent": "Sent", "failed": "Failed", "retracted": "Retracted", "open": "Open",
		"template": "Template", "status": "Status", "actual": "Live (actual)", "exercise": "Exercise", "test": "Test",
		"zones": "Zones", "channels": "Channels", "headline": "Headline", "expires_in": "Expires in (minutes)",
		"save_submit": "Save and submit for approval", "save": "Save as draft",
		"counts": "Would reach", "preview": "Preview", "retraction_texts": "Retraction texts", "digest": "Package digest",
		"approvals": "Approvals", "needed": "needed", "author": "Author", "editor": "Last editor",
		"submit": "Submit for approval", "approve": "Approve", "release": "Release", "return": "Return", "reject": "Reject",
		"stepup_code": "Fresh code (step-up)", "confirm_zone": "Type the zone name to confirm a live alert",
		"exercise_banner": "EXERCISE / ÜBUNG", "refresh": "Refresh", "waiting": "Still waiting",
		"target": "Target", "why": "Why", "start_maintenance": "Start maintenance", "end_maintenance": "End maintenance",
		"for": "For (e.g. 4h)", "timeline": "Timeline", "subject": "Subject", "kind": "What", "actor": "Who", "time": "When",
		"audit_state": "Verification", "already": "This form was already submitted; nothing was done twice.",
		"signin_failed": "Sign-in failed: wrong name, password or code, or locked.", "language": "Deutsch",
		"alert": "Alert", "go_alert": "Open the live alert", "approved_by": "approved by", "who_asked": "Asked by",
		"sweeping": "retractions of phones still being queued", "channel_counts": "Per channel",
		"signal": "Siren signal", "health": "Channels", "probes": "Probes: can we still alert?", "probe_ok": "answers", "probe_fail": "does not answer since",
		"enrol": "Enrol", "invite_token": "Invitation token (from the link)", "new_password": "New password (12 characters or more)",
		"totp_secret": "Add this secret to an authenticator app, then enter its current code", "enrolled": "Enrolled: sign in now.",
		"next": "Next", "keys": "Security key", "register_key": "Register a security key",
		"key_help": "A security key (or the computer's own authenticator) signs you in instead of the code. Registering needs a sign-in or step-up within the last minutes.",
		"key_done": "Security key registered.",
		"changed":  "Changed by the last edit", "description": "Description", "instruction": "Instruction", "event": "Event", "severity": "Severity", "urgency": "Urgency", "expires": "Expiry", "texts": "Texts",
		"actions": "Actions", "extend_maintenance": "Extend (a second person)",
		"chain_verified": "chain verified to entry", "checkpoint_signed": "checkpoint signed at", "not_yet": "entries after it not yet checkpointed",
		"no_checkpoint": "no valid checkpoint yet", "not_verified_here": "not verified here (set audit.verifier_key, or run tocsin audit verify)",
		"delivering": "Delivering", "completed": "Completed", "expired": "Expired", "pending_state": "Pending",
		"quarantined": "Quarantined triggers", "release_as_alert": "Release as alert", "dismiss": "Dismiss", "handled": "Handled",
	},
	"de": {
		"title": "Tocsin Leitstelle", "signin": "Anmelden", "operator": "Kennung", "password": "Passwort",
		"code": "Code aus der Authenticator-App", "signin_key": "Mit Sicherheitsschlüssel anmelden", "signout": "Abmelden",
		"dashboard": "Übersicht", "compose": "Neue Warnung", "sources": "Quellen", "audit": "Protokoll",
		"live_alerts": "Warnungen", "pending": "Warten auf Freigabe", "none": "Keine.", "maintenance_banner": "In Wartung",
		"until": "bis", "by": "von", "reason": "Grund", "note": "Notiz", "retract": "Widerrufen",
		"false_alarm": "Fehlalarm", "all_clear": "Entwarnung", "superseded": "Ersetzt",
		"state": "Zustand", "channel": "Kanal", "targets": "Ziele", "queued": "Wartend", "in_flight": "In Zustellung",
		"delivered": "Zugestellt", "sent": "Gesendet", "failed": "Fehlgeschlagen", "retracted": "Widerrufen", "open": "Offen",
		"template": "Vorlage", "status": "Status", "actual": "Echt (actual)", "exercise": "Übung", "test": "Test",
		"zones": "Zonen", "channels": "Kanäle", "headline": "Überschrift", "expires_in": "Gültig für (Minuten)",
		"save_submit": "Speichern und zur Freigabe geben", "save": "Als Entwurf speichern",
		"counts": "Würde erreichen", "preview": "Vorschau", "retraction_texts": "Widerrufstexte", "digest": "Prüfsumme des Pakets",
		"approvals": "Freigaben", "needed": "nötig", "author": "Verfasst von", "editor": "Zuletzt bearbeitet von",
		"submit": "Zur Freigabe geben", "approve": "Freigeben", "release": "Auslösen", "return": "Zurückgeben", "reject": "Ablehnen",
		"stepup_code": "Frischer Code (Bestätigung)", "confirm_zone": "Zonenname eintippen, um eine echte Warnung zu bestätigen",
		"exercise_banner": "EXERCISE / ÜBUNG", "refresh": "Aktualisieren", "waiting": "Noch offen",
		"target": "Ziel", "why": "Warum", "start_maintenance": "Wartung beginnen", "end_maintenance": "Wartung beenden",
		"for": "Dauer (z. B. 4h)", "timeline": "Verlauf", "subject": "Betreff", "kind": "Was", "actor": "Wer", "time": "Wann",
		"audit_state": "Prüfung", "already": "Dieses Formular wurde schon abgeschickt; nichts geschah doppelt.",
		"signin_failed": "Anmeldung fehlgeschlagen: Kennung, Passwort oder Code falsch, oder gesperrt.", "language": "English",
		"alert": "Warnung", "go_alert": "Zur laufenden Warnung", "approved_by": "freigegeben von", "who_asked": "Angefragt von",
		"sweeping": "Widerrufe an Telefone werden noch eingereiht", "channel_counts": "Je Kanal",
		"signal": "Sirenensignal", "health": "Kanäle", "probes": "Prüfungen: können wir noch warnen?", "probe_ok": "antwortet", "probe_fail": "antwortet nicht seit",
		"enrol": "Einrichten", "invite_token": "Einladungs-Token (aus dem Link)", "new_password": "Neues Passwort (mindestens 12 Zeichen)",
		"totp_secret": "Dieses Geheimnis in eine Authenticator-App eintragen, dann den aktuellen Code eingeben", "enrolled": "Eingerichtet: jetzt anmelden.",
		"next": "Weiter", "keys": "Sicherheitsschlüssel", "register_key": "Sicherheitsschlüssel registrieren",
		"key_help": "Ein Sicherheitsschlüssel (oder der Authenticator des Rechners) ersetzt beim Anmelden den Code. Registrieren geht nur kurz nach Anmeldung oder Bestätigung.",
		"key_done": "Sicherheitsschlüssel registriert.",
		"changed":  "Geändert bei der letzten Bearbeitung", "description": "Beschreibung", "instruction": "Handlungsanweisung", "event": "Ereignis", "severity": "Schwere", "urgency": "Dringlichkeit", "expires": "Ablauf", "texts": "Texte",
		"actions": "Aktionen", "extend_maintenance": "Verlängern (zweite Person)",
		"chain_verified": "Kette geprüft bis Eintrag", "checkpoint_signed": "Prüfpunkt signiert um", "not_yet": "Einträge danach noch ohne Prüfpunkt",
		"no_checkpoint": "noch kein gültiger Prüfpunkt", "not_verified_here": "hier nicht geprüft (audit.verifier_key setzen oder tocsin audit verify)",
		"delivering": "In Zustellung", "completed": "Abgeschlossen", "expired": "Abgelaufen", "pending_state": "Wartet",
		"quarantined": "Zurückgehaltene Auslösungen", "release_as_alert": "Als Warnung auslösen", "dismiss": "Verwerfen", "handled": "Erledigt",
	},
}

// language is the page's language: the lang cookie, else the browser's
// first choice of de or en, else German.
func language(r *http.Request) string {
	if c, err := r.Cookie("lang"); err == nil && labels[c.Value] != nil {
		return c.Value
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		l, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		l, _, _ = strings.Cut(strings.ToLower(l), "-")
		if labels[l] != nil {
			return l
		}
	}
	return "de"
}
