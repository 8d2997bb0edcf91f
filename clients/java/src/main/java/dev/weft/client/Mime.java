package dev.weft.client;

import java.io.ByteArrayOutputStream;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Just enough of RFC 5322 and MIME to read the mail directory's messages the way Python's
 * {@code email} package does for the check: the entries of an mboxrd mailbox, headers
 * (unfolded), nested multiparts, and the first {@code text/plain} part's text after its
 * transfer encoding (7bit, 8bit, quoted-printable, base64) and charset.
 */
final class Mime {
  private Mime() {}

  private static final Pattern MBOX_FROM_LINE = Pattern.compile("^From .*\n", Pattern.MULTILINE);
  private static final Pattern MBOX_QUOTED = Pattern.compile("^>(>*From )", Pattern.MULTILINE);

  /**
   * The messages of an mboxrd mailbox, oldest first, each unquoted and without the blank
   * line that ends its entry. A last entry not yet ended by that line is still being
   * written and left out.
   */
  static List<byte[]> mboxEntries(byte[] raw) {
    String text = new String(raw, StandardCharsets.ISO_8859_1);
    String[] entries = MBOX_FROM_LINE.split(text, -1);
    int whole = text.endsWith("\n\n") ? entries.length : entries.length - 1;
    List<byte[]> messages = new ArrayList<>();
    // entries[0] is what precedes the first `From ` line: nothing.
    for (int i = 1; i < whole; i++) {
      String entry = entries[i].endsWith("\n")
          ? entries[i].substring(0, entries[i].length() - 1) : entries[i];
      messages.add(MBOX_QUOTED.matcher(entry).replaceAll("$1")
          .getBytes(StandardCharsets.ISO_8859_1));
    }
    return messages;
  }

  /** A message or body part: its headers (lower-case names, first of each) and raw body. */
  record Part(Map<String, String> headers, String body) {
    String header(String name, String otherwise) {
      return headers.getOrDefault(name, otherwise);
    }
  }

  /** Parses a message; bytes are kept one char each (ISO-8859-1) until decoded. */
  static Part parse(byte[] raw) {
    return parse(new String(raw, StandardCharsets.ISO_8859_1).replace("\r\n", "\n"));
  }

  private static Part parse(String text) {
    int end = text.indexOf("\n\n");
    String head = end < 0 ? text : text.substring(0, end);
    String body = end < 0 ? "" : text.substring(end + 2);
    Map<String, String> headers = new LinkedHashMap<>();
    String name = null;
    StringBuilder value = new StringBuilder();
    for (String line : head.split("\n", -1)) {
      if (!line.isEmpty() && (line.charAt(0) == ' ' || line.charAt(0) == '\t') && name != null) {
        value.append(' ').append(line.strip());
        continue;
      }
      if (name != null) {
        headers.putIfAbsent(name, value.toString().strip());
      }
      int colon = line.indexOf(':');
      name = colon > 0 ? line.substring(0, colon).strip().toLowerCase(Locale.ROOT) : null;
      value = new StringBuilder(colon > 0 ? line.substring(colon + 1) : "");
    }
    if (name != null) {
      headers.putIfAbsent(name, value.toString().strip());
    }
    return new Part(headers, body);
  }

  /** The value of parameter `key` of a header such as Content-Type, if any. */
  static String param(String header, String key) {
    String[] fields = header.split(";");
    for (int i = 1; i < fields.length; i++) {
      String f = fields[i].strip();
      int eq = f.indexOf('=');
      if (eq > 0 && f.substring(0, eq).strip().equalsIgnoreCase(key)) {
        String v = f.substring(eq + 1).strip();
        if (v.length() >= 2 && v.startsWith("\"") && v.endsWith("\"")) {
          v = v.substring(1, v.length() - 1);
        }
        return v;
      }
    }
    return null;
  }

  /** The text of the first text/plain part (the message itself when it is one), or null. */
  static String plainBody(Part part) {
    String type = part.header("content-type", "text/plain");
    String mime = type.split(";")[0].strip().toLowerCase(Locale.ROOT);
    if (mime.startsWith("multipart/")) {
      String boundary = param(type, "boundary");
      if (boundary == null) {
        return null;
      }
      for (String child : split(part.body(), boundary)) {
        String text = plainBody(parse(child));
        if (text != null) {
          return text;
        }
      }
      return null;
    }
    if (!mime.equals("text/plain")) {
      return null;
    }
    String disposition = part.header("content-disposition", "");
    if (disposition.toLowerCase(Locale.ROOT).startsWith("attachment")) {
      return null;
    }
    byte[] bytes = decode(part.header("content-transfer-encoding", "7bit"), part.body());
    Charset charset = StandardCharsets.UTF_8;
    String name = param(type, "charset");
    try {
      if (name != null) {
        charset = Charset.forName(name);
      }
    } catch (IllegalArgumentException unknown) {
      // Read it as UTF-8.
    }
    return new String(bytes, charset);
  }

  /** The parts of a multipart body between its `--boundary` lines. */
  static List<String> split(String body, String boundary) {
    String delimiter = "--" + boundary;
    List<String> parts = new ArrayList<>();
    StringBuilder current = null;
    for (String line : body.split("\n", -1)) {
      String t = line.stripTrailing();
      boolean last = t.equals(delimiter + "--");
      if (last || t.equals(delimiter)) {
        if (current != null) {
          parts.add(current.toString());
        }
        if (last) {
          break;
        }
        current = new StringBuilder();
        continue;
      }
      if (current != null) {
        current.append(line).append('\n');
      }
    }
    return parts;
  }

  static byte[] decode(String encoding, String body) {
    switch (encoding.strip().toLowerCase(Locale.ROOT)) {
      case "base64":
        return Base64.getMimeDecoder().decode(body.getBytes(StandardCharsets.ISO_8859_1));
      case "quoted-printable":
        return quotedPrintable(body);
      default:
        return body.getBytes(StandardCharsets.ISO_8859_1);
    }
  }

  static byte[] quotedPrintable(String body) {
    String s = body.replaceAll("=[ \t]*\n", "");
    ByteArrayOutputStream out = new ByteArrayOutputStream(s.length());
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '=' && i + 2 < s.length() && isHex(s.charAt(i + 1)) && isHex(s.charAt(i + 2))) {
        out.write(Integer.parseInt(s.substring(i + 1, i + 3), 16));
        i += 2;
      } else {
        out.write(c);
      }
    }
    return out.toByteArray();
  }

  private static boolean isHex(char c) {
    return Character.digit(c, 16) >= 0;
  }
}
