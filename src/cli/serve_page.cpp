#include "serve_page.h"

namespace idiff::cli {

// One file, no framework: the form posts a job, the event stream (read with fetch, so a
// bearer token can go with it) moves the bar, the images are shown as they finish.
const std::string& serve_page_html() {
  static const std::string page = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>idiff serve</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:60em}
label{display:inline-block;margin:.3em 1em .3em 0}
input,select{width:7em}
#bar{width:100%;height:1.2em;background:#eee;margin:1em 0}
#fill{height:100%;width:0;background:#4a8}
#images img{width:96px;height:96px;image-rendering:pixelated;margin:2px;border:1px solid #ccc}
#stats{color:#555;font-size:.9em}
</style></head><body>
<h1>idiff serve</h1>
<div id="model"></div>
<form id="job" onsubmit="startJob();return false">
<label>sampler <select id="sampler"></select></label>
<label>steps <input id="steps" type="number" min="1" placeholder="default"></label>
<label>class <input id="class" placeholder="random"></label>
<label>guidance <input id="guidance" type="number" step="0.1" placeholder="1"></label>
<label>seed <input id="seed" type="number" min="0" placeholder="random"></label>
<label>count <input id="count" type="number" min="1" value="4"></label>
<label>token <input id="token" type="password" placeholder="if needed"></label>
<button id="generate" type="submit">Generate</button>
</form>
<div id="bar"><div id="fill"></div></div>
<div id="status">idle</div>
<div id="images"></div>
<a id="npz" href="#" style="display:none" download="samples.npz">download npz</a>
<div id="stats"></div>
<script>
function headers(){const t=document.getElementById('token').value;
  const h={'Content-Type':'application/json'};if(t)h['Authorization']='Bearer '+t;return h}
async function api(path,opts){opts=opts||{};opts.headers=headers();const r=await fetch(path,opts);
  if(!r.ok){let m='HTTP '+r.status;try{m=(await r.json()).error.message}catch(e){}throw new Error(m)}
  return r}
function setStatus(s){document.getElementById('status').textContent=s}
async function loadModel(){try{const m=(await (await api('/v1/models')).json()).data[0];
  document.getElementById('model').textContent=m.model_path+' ('+m.parameters+' parameters, '+
    m.image_size+'x'+m.image_size+', '+m.device+')';
  const sel=document.getElementById('sampler');sel.innerHTML='<option value="">default</option>';
  for(const s of m.samplers){const o=document.createElement('option');o.value=o.textContent=s;sel.appendChild(o)}
  }catch(e){setStatus('models: '+e.message)}}
function body(){const b={};const v=id=>document.getElementById(id).value;
  if(v('sampler'))b.sampler=v('sampler');if(v('steps'))b.steps=parseInt(v('steps'));
  if(v('class'))b['class']=v('class');if(v('guidance'))b.guidance_scale=parseFloat(v('guidance'));
  if(v('seed'))b.seed=parseInt(v('seed'));b.num_samples=parseInt(v('count')||'1');return b}
async function showImages(id,n){const box=document.getElementById('images');box.innerHTML='';
  for(let k=0;k<n;k++){const blob=await (await api('/v1/jobs/'+id+'/images/'+k+'.png')).blob();
    const img=document.createElement('img');img.src=URL.createObjectURL(blob);img.className='sample';box.appendChild(img)}
  const blob=await (await api('/v1/jobs/'+id+'/samples.npz')).blob();
  const a=document.getElementById('npz');a.href=URL.createObjectURL(blob);a.style.display='inline'}
async function follow(id){const r=await api('/v1/jobs/'+id+'/events');const reader=r.body.getReader();
  const dec=new TextDecoder();let buf='';
  while(true){const {value,done}=await reader.read();if(done)break;buf+=dec.decode(value,{stream:true});
    let i;while((i=buf.indexOf('\n\n'))>=0){const chunk=buf.slice(0,i);buf=buf.slice(i+2);
      let type='',data='';for(const line of chunk.split('\n')){
        if(line.startsWith('event: '))type=line.slice(7);if(line.startsWith('data: '))data=line.slice(6)}
      if(!type)continue;const d=JSON.parse(data);
      if(type==='queued')setStatus('queued, position '+d.queue_position);
      if(type==='step'){document.getElementById('fill').style.width=(100*d.step/d.of)+'%';
        setStatus('step '+d.step+' of '+d.of+', '+d.seconds_left.toFixed(1)+' s left')}
      if(type==='done'){document.getElementById('fill').style.width='100%';
        setStatus('done: seed '+d.seed+', '+d.timings.total_s.toFixed(1)+' s');await showImages(id,d.num_samples)}
      if(type==='failed'||type==='cancelled')setStatus(type+': '+d.error)}}}
async function startJob(){document.getElementById('fill').style.width='0';
  document.getElementById('npz').style.display='none';
  try{const r=await api('/v1/jobs',{method:'POST',body:JSON.stringify(body())});const j=await r.json();
    window.lastJob=j.id;setStatus('queued, position '+j.queue_position);await follow(j.id)}catch(e){setStatus('error: '+e.message)}}
async function stats(){try{const h=await (await api('/health')).json();
  const m=await (await api('/metrics')).text();const ips=(m.match(/^idiff_images_per_second (\S+)/m)||[])[1];
  document.getElementById('stats').textContent='queue: '+h.queued+' waiting, '+h.generating+
    ' generating; '+(ips?parseFloat(ips).toFixed(2):'?')+' images/s'}catch(e){}}
loadModel();stats();setInterval(stats,2000);
</script></body></html>
)html";
  return page;
}

}  // namespace idiff::cli
