// Renders an Ollama Modelfile TEMPLATE the way Ollama's template.Execute does for a chat: Go's
// text/template with missingkey=zero and Ollama's `json` function, system messages collated into
// .System, consecutive messages of one role merged, and .Messages/.Think/.IsThinkSet as Ollama passes
// them. Reads {"template", "messages", "think", "is_think_set"} as JSON on stdin, writes the prompt.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Request struct {
	Template   string    `json:"template"`
	Messages   []Message `json:"messages"`
	Think      bool      `json:"think"`
	IsThinkSet bool      `json:"is_think_set"`
}

func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
			collated[len(collated)-1].Content += "\n\n" + msgs[i].Content
		} else {
			collated = append(collated, &msgs[i])
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func main() {
	var req Request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl := template.Must(template.New("").Option("missingkey=zero").Funcs(funcs).Parse(req.Template))
	system, messages := collate(req.Messages)
	err := tmpl.Execute(os.Stdout, map[string]any{
		"System": system, "Messages": messages, "Tools": nil, "Response": "",
		"Think": req.Think, "IsThinkSet": req.IsThinkSet,
	})
	if err != nil {
		panic(err)
	}
}
