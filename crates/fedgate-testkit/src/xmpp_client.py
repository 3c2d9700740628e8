# fedgate-testkit XMPP client driver (slixmpp). Written to a temp dir and run by
# fedgate_testkit::XmppClient. Usage: xmpp_client.py JID PASSWORD HOST PORT
#
# stdin, one command per line:
#   send <jid> <body...>          chat message
#   chatstate <jid> <state>       XEP-0085 chat state alone (composing, paused, active, ...)
#   presence <show|available|unavailable> [status...]   show: away chat dnd xa
#   jabber <busy|idle> [status...]   presence as a Jabber-style client announces Busy /
#                                 Idle: <show>dnd</show> / <show>away</show> with a
#                                 <state xmlns='urn:fedgate:presence:jabber-state:0'>
#   subscribe <jid> | approve <jid> | deny <jid>
#   block <jid>... | unblock [<jid>...]   XEP-0191 blocking command (unblock alone: all)
#   roster                        prints "roster jid=.. subscription=.. ask=.." lines, then "roster end"
#   quit
# stdout, one event per line (body and status come last and run to the end of
# the line; newlines in them are written as \n):
#   ready jid=<full jid>
#   ok <command word>              after each command was handed to the stream
#   message from=.. type=.. [chatstate=..] body=..   (chatstate: XEP-0085, if any)
#   presence from=.. type=.. show=.. status=..
#   subscribe from=..
#   error from=.. condition=.. [text=..]
#   fatal <reason>                 then exit status 2
import logging
import os
import ssl
import sys
import threading
import xml.etree.ElementTree as ET

import slixmpp


CHATSTATES = "http://jabber.org/protocol/chatstates"
JABBER_STATE = "urn:fedgate:presence:jabber-state:0"


def esc(s):
    return (s or "").replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Driver(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # None = neither accept nor reject subscription requests: the test decides
        # (False would make slixmpp answer "unsubscribed" by itself).
        self.auto_authorize = None
        self.auto_subscribe = False
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self["feature_mechanisms"].unencrypted_plain = True
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", lambda _e: self.fatal("auth failed"))
        self.add_event_handler("connection_failed", lambda e: self.fatal("connection failed: %s" % e))
        self.add_event_handler("message", self.on_message)
        # slixmpp's "message" event needs a <body/>: chat states alone come from the
        # XEP-0085 plugin's event.
        self.register_plugin("xep_0085")
        self.add_event_handler("chatstate", self.on_chatstate)
        self.add_event_handler("presence", self.on_presence)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.quitting = False

    def fatal(self, reason):
        out("fatal " + esc(str(reason)))
        os._exit(2)

    def on_disconnected(self, _e):
        if not self.quitting:
            self.fatal("disconnected")

    async def on_start(self, _e):
        self.send_presence()
        await self.get_roster()
        out("ready jid=%s" % self.boundjid.full)
        threading.Thread(target=self.stdin_loop, daemon=True).start()

    def stdin_loop(self):
        for line in sys.stdin:
            line = line.rstrip("\n")
            if line.strip():
                self.loop.call_soon_threadsafe(self.command, line)
        self.loop.call_soon_threadsafe(self.command, "quit")

    def error_line(self, stanza):
        err = stanza["error"]
        text = err["text"]
        line = "error from=%s condition=%s" % (stanza["from"], err["condition"])
        if text:
            line += " text=" + esc(text)
        out(line)

    def on_message(self, msg):
        if msg["type"] == "error":
            self.error_line(msg)
            return
        state = ""
        for child in msg.xml:
            if child.tag.startswith("{" + CHATSTATES + "}"):
                state = " chatstate=" + child.tag.split("}", 1)[1]
        out("message from=%s type=%s%s body=%s" % (msg["from"], msg["type"], state, esc(msg["body"])))

    def on_chatstate(self, msg):
        if not msg["body"] and msg["type"] != "error":
            self.on_message(msg)

    def on_presence(self, pres):
        # The raw attribute: slixmpp's pres["type"] answers the <show/> value.
        ptype = pres.xml.attrib.get("type") or "available"
        if ptype == "error":
            self.error_line(pres)
        elif ptype == "subscribe":
            out("subscribe from=%s" % pres["from"].bare)
        else:
            out("presence from=%s type=%s show=%s status=%s"
                % (pres["from"], ptype, pres["show"] or "", esc(pres["status"])))

    def command(self, line):
        word, _, rest = line.partition(" ")
        try:
            if word == "send":
                to, _, body = rest.partition(" ")
                self.send_message(mto=to, mbody=body, mtype="chat")
            elif word == "chatstate":
                to, _, state = rest.partition(" ")
                if state not in ("active", "composing", "paused", "inactive", "gone"):
                    raise ValueError("bad chat state %r" % state)
                msg = self.make_message(mto=to, mtype="chat")
                msg.xml.append(ET.Element("{%s}%s" % (CHATSTATES, state)))
                msg.send()
            elif word == "presence":
                show, _, status = rest.partition(" ")
                if show == "unavailable":
                    self.send_presence(ptype="unavailable", pstatus=status or None)
                elif show in ("", "available"):
                    self.send_presence(pstatus=status or None)
                elif show in ("away", "chat", "dnd", "xa"):
                    self.send_presence(pshow=show, pstatus=status or None)
                else:
                    raise ValueError("bad show %r" % show)
            elif word == "jabber":
                state, _, status = rest.partition(" ")
                if state not in ("busy", "idle"):
                    raise ValueError("bad jabber state %r" % state)
                pres = self.make_presence(pshow="dnd" if state == "busy" else "away",
                                          pstatus=status or None)
                el = ET.Element("{%s}state" % JABBER_STATE)
                el.text = state
                pres.xml.append(el)
                pres.send()
            elif word in ("block", "unblock"):
                jids = rest.split()
                if word == "block" and not jids:
                    raise ValueError("missing jid")
                iq = self.make_iq_set()
                cmd = ET.Element("{urn:xmpp:blocking}%s" % word)
                for j in jids:
                    ET.SubElement(cmd, "{urn:xmpp:blocking}item").set("jid", j)
                iq.xml.append(cmd)
                iq.send()
            elif word in ("subscribe", "approve", "deny"):
                ptype = {"subscribe": "subscribe", "approve": "subscribed", "deny": "unsubscribed"}[word]
                to = rest.strip()
                if not to:
                    raise ValueError("missing jid")
                self.send_presence(pto=to, ptype=ptype)
            elif word == "roster":
                for jid in self.client_roster:
                    item = self.client_roster[jid]
                    out("roster jid=%s subscription=%s ask=%s"
                        % (jid, item["subscription"], "subscribe" if item["pending_out"] else ""))
                out("roster end")
            elif word == "quit":
                self.quitting = True
                out("ok quit")
                self.disconnect()
                return
            else:
                raise ValueError("unknown command %r" % word)
            out("ok " + word)
        except Exception as e:  # report, keep running
            out("cmderror command=%s reason=%s" % (word, esc(str(e))))


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    jid, password, host, port = sys.argv[1:5]
    xmpp = Driver(jid, password)
    xmpp.connect(address=(host, int(port)))
    xmpp.process(forever=False)


if __name__ == "__main__":
    main()
